"""Pull workers: no listening port, long-poll claims, leases kept by heartbeats, a worker killed
mid-task, cancellation seen at the next heartbeat, graceful hand-back; on every store."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import httpx
import pytest

from opscore.models import WorkerTask, utcnow
from opscore.worker import TaskContext, Worker

from .conftest import KEY, STORES, make_settings, store_url
from .servers import wait_for
from .workflow_helpers import by_step, create, run, settle, task, template


class WorkerThread:
    """An SDK worker on its own event loop in a thread, stopped gracefully."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self.stop_event = asyncio.Event()
            await self.worker.run_async(self.stop_event)

        self.loop.run_until_complete(main())

    def start(self) -> WorkerThread:
        self.thread.start()
        wait_for(lambda: self.stop_event is not None)
        return self

    def stop(self) -> None:
        if self.thread.is_alive():
            assert self.stop_event is not None
            self.loop.call_soon_threadsafe(self.stop_event.set)
            self.thread.join(timeout=30)


@pytest.fixture(params=STORES)
def pulled(request, server_factory, tmp_path):
    settings = make_settings(
        storage_url=store_url(request, request.param, tmp_path), worker_lease_seconds=1
    )
    server = server_factory(settings)
    threads: list[WorkerThread] = []

    def start(worker: Worker) -> WorkerThread:
        thread = WorkerThread(worker).start()
        threads.append(thread)
        return thread

    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=10) as client:
        yield client, server, start
    for thread in threads:
        thread.stop()


def new_worker(server: Any, agent_id: str, **options: Any) -> Worker:
    return Worker(agent_id, url=server.url, api_key=KEY, poll_seconds=2, **options)


def test_a_worker_with_no_port_runs_a_three_step_workflow(pulled) -> None:
    client, server, start = pulled
    worker = new_worker(server, "puller-1", max_concurrency=2)

    @worker.task("fetch")
    def fetch(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"text": f"news about {params['topic']}", "attempt": ctx.attempt}

    @worker.task("summarize")
    async def summarize(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"summary": params["text"].upper()}

    @worker.task("publish")
    def publish(params: dict[str, Any], ctx: TaskContext) -> str:
        return f"published {params['summary']}"

    start(worker)
    create(
        client,
        template(
            "pulled",
            task("fetch", agentCapability="fetch", parameters={"topic": "${input.topic}"}),
            task(
                "summarize",
                agentCapability="summarize",
                dependsOn=["fetch"],
                parameters={"text": "${tasks.fetch.result.text}"},
            ),
            task(
                "publish",
                agentCapability="publish",
                dependsOn=["summarize"],
                parameters={"summary": "${tasks.summarize.result.summary}"},
            ),
        ),
    )
    detail = settle(client, run(client, "pulled", {"topic": "agents"}), timeout=30)

    assert detail["status"] == "completed"
    assert by_step(detail)["publish"]["result"] == "published NEWS ABOUT AGENTS"
    agent = client.get("/v1/opscore/agents/puller-1").json()
    assert agent["delivery"] == "pull" and agent["contactEndpoint"] is None
    assert sorted(agent["capabilities"]) == ["fetch", "publish", "summarize"]
    assert all(t["agentId"] == "puller-1" for t in detail["tasks"])


KILLABLE = textwrap.dedent(
    """
    import sys, time
    from opscore.worker import Worker

    worker = Worker("doomed", url=sys.argv[1], api_key=sys.argv[2], poll_seconds=1)

    @worker.task("slow")
    def slow(params, ctx):
        print("working", flush=True)
        time.sleep(600)

    worker.run()
    """
)


def test_a_worker_killed_mid_task_loses_its_lease_and_another_finishes(pulled, tmp_path) -> None:
    client, server, start = pulled
    script = tmp_path / "doomed.py"
    script.write_text(KILLABLE)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    doomed = subprocess.Popen(
        [sys.executable, str(script), server.url, KEY],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        create(client, template("slow", task("a", agentCapability="slow")))
        sid = run(client, "slow")
        assert doomed.stdout is not None
        assert doomed.stdout.readline().strip() == "working"  # it claimed the task
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(timeout=10)
    finally:
        if doomed.poll() is None:
            doomed.kill()
            doomed.wait(timeout=10)

    rescuer = new_worker(server, "rescuer")

    @rescuer.task("slow")
    def quick(params: dict[str, Any], ctx: TaskContext) -> str:
        return "done by the rescuer"

    start(rescuer)
    detail = settle(client, sid, timeout=30)

    assert detail["status"] == "completed"
    step = by_step(detail)["a"]
    assert step["agentId"] == "rescuer" and step["result"] == "done by the rescuer"
    assert [h["outcome"] for h in step["history"]] == ["agent_lost", "completed"]
    assert step["history"][0]["agentId"] == "doomed"
    assert "lease" in step["history"][0]["error"]


def test_a_cancelled_task_reaches_the_worker_at_its_next_heartbeat(pulled) -> None:
    client, server, start = pulled
    worker = new_worker(server, "patient")
    seen: list[bool] = []

    @worker.task("wait")
    async def wait(params: dict[str, Any], ctx: TaskContext) -> str:
        await asyncio.wait_for(ctx.cancelled.wait(), timeout=30)
        seen.append(True)
        return "too late"

    start(worker)
    create(client, template("waits", task("a", agentCapability="wait")))
    sid = run(client, "waits")
    task_id = wait_for(
        lambda: (
            (t := client.get(f"/v1/opscore/sessions/{sid}").json()["tasks"][0])["status"]
            == "running"
            and t["taskId"]
        )
    )
    assert client.post(f"/v1/opscore/sessions/{sid}/cancel").status_code == 200

    wait_for(lambda: seen == [True], timeout=15)
    cancelled = client.get(f"/v1/opscore/tasks/{task_id}").json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelAcknowledgedAt"] is not None
    assert cancelled["result"] is None  # its late result was dropped


def test_a_worker_shutting_down_hands_back_what_it_could_not_finish(pulled) -> None:
    client, server, start = pulled
    leaving = new_worker(server, "leaving", shutdown_grace=0.2)
    release = threading.Event()

    @leaving.task("long")
    def long_task(params: dict[str, Any], ctx: TaskContext) -> str:
        release.wait(30)
        return "never used"

    thread = start(leaving)
    create(client, template("long", task("a", agentCapability="long")))
    sid = run(client, "long")
    wait_for(
        lambda: client.get(f"/v1/opscore/sessions/{sid}").json()["tasks"][0]["status"] == "running"
    )
    thread.stop()
    release.set()
    staying = new_worker(server, "staying")

    @staying.task("long")
    def finish(params: dict[str, Any], ctx: TaskContext) -> str:
        return "finished"

    start(staying)
    step = settle(client, sid, timeout=30)["tasks"][0]
    assert step["result"] == "finished" and step["agentId"] == "staying"
    assert step["history"][0]["outcome"] == "agent_lost"
    assert step["history"][0]["agentId"] == "leaving"
    assert step["unchargedAttempts"] == 1  # handed back: not charged to the retry budget
    agent = client.get("/v1/opscore/agents/leaving").json()
    assert agent["state"] == "offline"


def test_the_worker_api_refuses_what_is_not_a_workers(pulled) -> None:
    client, _, _ = pulled
    client.post("/v1/opscore/agents", json={"agentId": "pusher", "agentName": "p"})
    pushed = client.post("/v1/opscore/workers/pusher/claim", json={"waitSeconds": 0})
    assert pushed.status_code == 409 and pushed.json()["error"]["code"] == "NOT_A_PULL_WORKER"
    missing = client.post("/v1/opscore/workers/ghost/claim", json={"waitSeconds": 0})
    assert missing.status_code == 404
    client.post("/v1/opscore/agents", json={"agentId": "pw", "agentName": "pw", "delivery": "pull"})
    started = time.monotonic()
    empty = client.post("/v1/opscore/workers/pw/claim", json={"waitSeconds": 1})
    assert empty.status_code == 200 and empty.json() == {"tasks": []}
    assert time.monotonic() - started >= 0.9  # it waited
    lost = client.post("/v1/opscore/workers/pw/tasks/task-nope/heartbeat")
    assert lost.status_code == 404
    too_long = client.post("/v1/opscore/workers/pw/claim", json={"waitSeconds": 61})
    assert too_long.status_code == 422


def test_the_example_worker_runs_the_digest_workflow(pulled) -> None:
    from examples.worker import make_worker

    from .test_cli import EXAMPLES

    client, server, start = pulled
    start(make_worker("example-worker", url=server.url, api_key=KEY))
    client.post(
        "/v1/opscore/workflows",
        content=(EXAMPLES / "digest.yaml").read_bytes(),
        headers={"Content-Type": "application/yaml"},
    )
    detail = settle(client, run(client, "digest", {"topic": "agents"}), timeout=30)
    assert detail["status"] == "completed"
    assert by_step(detail)["publish"]["result"]["published"] is True


async def test_a_long_poll_records_the_worker_as_seen_not_every_slice() -> None:
    """A waiting poll looks at the store every half second, but writes 'seen' at most every
    few seconds: an idle fleet of workers does not turn into a stream of writes."""
    from opscore.lifecycle import AgentRegistry, AgentStates
    from opscore.models import AgentCreate
    from opscore.storage import storage_from_url
    from opscore.workflow import build_workflow

    from .conftest import make_settings

    settings = make_settings()
    storage = storage_from_url("memory://")
    await storage.open()
    registry = AgentRegistry(storage)
    states = AgentStates(storage, settings, registry)
    workflow = build_workflow(storage, settings, registry, states)
    await registry.register_agent(
        AgentCreate(agent_id="w1", agent_name="w1", capabilities=["x"], delivery="pull")
    )
    writes: list[str] = []
    update = storage.update_agent

    async def counted(agent_id: str, changes: dict) -> Any:
        writes.append(agent_id)
        return await update(agent_id, changes)

    storage.update_agent = counted  # type: ignore[method-assign]
    claimed = await workflow.workers.claim("w1", wait=2.2, most=1)
    assert claimed == []
    assert len(writes) == 1  # once at the start; slices every 0.5 s wrote nothing more
    await storage.close()


async def test_a_shutdown_stops_the_lease_keepers_before_it_reports_offline() -> None:
    """A heartbeat after the worker reported offline brought it back online (the server
    counts a heartbeat as a sign of life), and a task was handed to it again: every
    lease-keeper has ended, and the worker's tasks with them, before the offline report."""
    calls: list[str] = []

    class Client:
        async def heartbeat_task(self, agent_id: str, task_id: str) -> None:
            calls.append("heartbeat")

        async def report_state(self, agent_id: str, state: str) -> None:
            calls.append(state)
            await asyncio.sleep(0.6)  # a slow answer: three heartbeats' time
            calls.append(f"{state} answered")

        async def release_claimed(self, agent_id: str, task_id: str) -> None:
            calls.append(f"release {task_id}")

    worker = Worker("w", url="http://127.0.0.1:9", api_key="k", shutdown_grace=0.05)
    started = asyncio.Event()

    @worker.task("long")
    async def long_task(params: dict[str, Any], ctx: TaskContext) -> str:
        started.set()
        await asyncio.sleep(30)
        return "never"

    claimed = WorkerTask(
        task_id="t1",
        session_id="s1",
        task_name="a",
        capability="long",
        attempt=1,
        message={},
        lease_seconds=0.6,  # a heartbeat every 0.2 s
        lease_until=utcnow(),
    )
    running = {asyncio.create_task(worker._work(Client(), claimed))}
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.3)  # one heartbeat at least
    await asyncio.wait_for(worker._shut_down(Client(), running), 10)
    assert "heartbeat" in calls
    after = calls[calls.index("offline") :]
    assert after == ["offline", "offline answered", "release t1"]
    assert all(work.done() for work in running)
