"""Concurrency limits: tasks of a capability, and runs of a workflow, on every store and across
two processes sharing one."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import httpx
import pytest

from opscore.dispatch.limits import SlotPools
from opscore.storage import storage_from_url

from .fakes import Behaviour
from .servers import wait_for
from .workflow_helpers import by_step, create, run, settle, task, template


def most_at_once(tasks: list[dict[str, Any]]) -> int:
    """The most tasks started and not yet finished at one moment. (A task's dispatchedAt is
    when its dispatcher pass began, before it took its slot; startedAt comes after.)"""
    moments = []
    for t in tasks:
        start = datetime.fromisoformat(t["startedAt"])
        end = datetime.fromisoformat(t["finishedAt"])
        moments += [(start, 1), (end, -1)]
    running = peak = 0
    for _, step in sorted(moments, key=lambda m: (m[0], m[1])):
        running += step
        peak = max(peak, running)
    return peak


def test_a_capability_limit_holds_tasks_back_in_order(ops) -> None:
    client, fleet, _ = ops
    for name in ("w1", "w2", "w3"):
        fleet.add(name, Behaviour(work_seconds=0.3, max_concurrency=2))
    limit = client.put("/v1/opscore/limits/capabilities/work", json={"maxRunning": 2})
    assert limit.status_code == 200, limit.text
    create(client, template("one", task("a")))

    sessions = [run(client, "one", {"i": i}) for i in range(6)]
    details = [settle(client, sid, timeout=60) for sid in sessions]

    assert {d["status"] for d in details} == {"completed"}
    tasks = [d["tasks"][0] for d in details]
    assert most_at_once(tasks) <= 2
    # a task's capability slot is given back just after the write that completes it (and its
    # run), so a run can read as completed a moment before its slot is free
    freed = [{"capability": "work", "maxRunning": 2, "running": 0}]
    wait_for(lambda: client.get("/v1/opscore/limits").json()["items"] == freed)
    assert client.delete("/v1/opscore/limits/capabilities/work").status_code == 204
    assert client.delete("/v1/opscore/limits/capabilities/work").status_code == 404
    assert (
        client.put("/v1/opscore/limits/capabilities/x", json={"maxRunning": 0}).status_code == 422
    )


def test_a_workflow_limit_queues_runs_and_admits_them_in_order(ops) -> None:
    client, fleet, _ = ops
    fleet.add("worker", Behaviour())
    body = template(
        "gated", {"taskId": "review", "kind": "approval"}, task("after", dependsOn=["review"])
    )
    create(client, {**body, "maxConcurrentRuns": 1})
    first, second, third, fourth = (run(client, "gated", {"i": i}) for i in range(4))

    def status(sid: str) -> str:
        return client.get(f"/v1/opscore/sessions/{sid}").json()["status"]

    wait_for(lambda: len(client.get("/v1/opscore/waiting").json()["items"]) == 1)
    assert [status(s) for s in (first, second, third, fourth)] == [
        "running",
        "queued",
        "queued",
        "queued",
    ]
    assert client.post(f"/v1/opscore/sessions/{third}/cancel").status_code == 200

    for current, following in ((first, second), (second, fourth)):
        [step] = client.get("/v1/opscore/waiting").json()["items"]
        assert step["sessionId"] == current
        assert (
            client.post(f"/v1/opscore/tasks/{step['taskId']}/approve", json={}).status_code == 200
        )
        assert settle(client, current)["status"] == "completed"
        wait_for(lambda following=following: status(following) == "running")
    [step] = client.get("/v1/opscore/waiting").json()["items"]
    client.post(f"/v1/opscore/tasks/{step['taskId']}/approve", json={})
    last = settle(client, fourth)
    assert last["status"] == "completed" and by_step(last)["after"]["status"] == "completed"
    assert status(third) == "cancelled"


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"])
async def test_two_processes_never_take_more_slots_than_the_limit(
    request, backend, tmp_path
) -> None:
    from .conftest import store_url

    url = store_url(request, backend, tmp_path)
    stores = [storage_from_url(url), storage_from_url(url)]
    for store in stores:
        await store.open()
    try:
        pools = [SlotPools(s) for s in stores]
        results = await asyncio.gather(
            *(pools[i % 2].acquire("cap:x", f"t{i}", 3) for i in range(12))
        )
        assert sum(results) == 3
        holders = await pools[0].holders("cap:x")
        assert len(holders) == 3
        await pools[1].release("cap:x", holders[:1])
        assert await pools[0].acquire("cap:x", "late", 3)
        assert not await pools[1].acquire("cap:x", "later", 3)
        assert await pools[1].acquire("cap:x", "late", 3)  # a holder asking again keeps its slot
    finally:
        for store in stores:
            await store.close()


def test_a_run_limit_is_part_of_the_template(client: httpx.Client) -> None:
    body = {**template("lim", task("a")), "maxConcurrentRuns": 0}
    response = client.post("/v1/opscore/workflows", json=body)
    assert response.status_code == 422
    body["maxConcurrentRuns"] = 3
    assert client.post("/v1/opscore/workflows", json=body).status_code == 201
    assert client.get("/v1/opscore/workflows/lim").json()["maxConcurrentRuns"] == 3
