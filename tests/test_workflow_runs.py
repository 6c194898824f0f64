"""Whole flows over real HTTP: register -> report state -> trigger -> dispatch -> complete."""

from __future__ import annotations

import sys
import threading
from datetime import datetime

import httpx

from opscore.dispatch.dispatcher import BATCH

from .conftest import KEY, contract, make_settings
from .fakes import Behaviour, FakeAgentKit
from .servers import wait_for
from .workflow_helpers import by_step, create, run, settle, task, template


def test_three_step_sequence_passes_results_along_and_completes(ops) -> None:
    client, fleet, _ = ops
    fleet.add("fetcher", Behaviour(capabilities=["fetch"]))
    fleet.add("writer", Behaviour(capabilities=["summarize", "publish"]))
    create(
        client,
        template(
            "digest",
            task(
                "fetch",
                agentCapability="fetch",
                parameters={"topic": "${input.topic}"},
                nextTaskId="summarize",
            ),
            task(
                "summarize",
                agentCapability="summarize",
                parameters={"from": "${tasks.fetch.result.agent}", "n": 3},
                nextTaskId="publish",
            ),
            task(
                "publish",
                agentCapability="publish",
                parameters={"text": "topic=${tasks.fetch.result.echo.topic}"},
            ),
        ),
    )

    sid = run(client, "digest", {"topic": "agents"})
    detail = settle(client, sid)

    assert detail["status"] == "completed"
    steps = by_step(detail)
    assert [steps[s]["status"] for s in ("fetch", "summarize", "publish")] == ["completed"] * 3
    assert steps["fetch"]["agentId"] == "fetcher" and steps["publish"]["agentId"] == "writer"
    assert steps["summarize"]["resolvedParameters"] == {"from": "fetcher", "n": 3}
    assert steps["publish"]["resolvedParameters"] == {"text": "topic=agents"}
    assert steps["publish"]["result"]["echo"] == {"text": "topic=agents"}
    order = [m["task_name"] for m in fleet.received]
    assert order == ["fetch", "summarize", "publish"]
    for step in steps.values():
        attempt = step["history"][0]
        assert attempt["dispatchedAt"] <= attempt["startedAt"] <= attempt["finishedAt"]
        assert attempt["outcome"] == "completed"


def test_dispatch_message_matches_the_agentkit_contract(ops) -> None:
    client, fleet, _ = ops
    fleet.add("a1")
    create(
        client, template("one", task("summarize", parameters={"url": "https://example.org/report"}))
    )
    sid = run(client, "one")
    settle(client, sid)
    message = {k: v for k, v in fleet.received[0].items() if not k.startswith("_")}
    expected = contract("dispatch_via_agentkit.json")["body"]
    # what AgentKit forwards to the agent: its request body plus the model's own timestamp
    assert set(message) == set(expected) | {"timestamp"}
    assert datetime.fromisoformat(message["timestamp"]).tzinfo is not None
    assert message["senderId"] == "opscore" and message["messageType"] == "workflow_task"
    assert message["payload"] == {
        "task_name": "summarize",
        "parameters": {"url": "https://example.org/report"},
    }
    assert message["sessionContext"] == {"sessionId": sid, "priorMessages": []}
    assert message["opscore_session_id"] == sid and message["task_name"] == "summarize"
    assert message["opscore_task_id"].startswith("task-")


def test_fan_out_and_fan_in(ops) -> None:
    client, fleet, _ = ops
    for i in range(3):
        fleet.add(f"w{i}", Behaviour(work_seconds=0.2))
    create(
        client,
        template(
            "fan",
            task("start"),
            task("left", dependsOn=["start"]),
            task("right", dependsOn=["start"]),
            task(
                "join",
                dependsOn=["left", "right"],
                parameters={"l": "${tasks.left.result.task}", "r": "${tasks.right.result.task}"},
            ),
        ),
    )
    detail = settle(client, run(client, "fan"))
    assert detail["status"] == "completed"
    steps = by_step(detail)
    assert steps["join"]["resolvedParameters"] == {"l": "left", "r": "right"}
    # left and right ran in parallel on different agents
    assert steps["left"]["agentId"] != steps["right"]["agentId"]
    assert steps["left"]["startedAt"] < steps["right"]["finishedAt"]
    assert steps["right"]["startedAt"] < steps["left"]["finishedAt"]
    assert steps["join"]["dispatchedAt"] >= max(
        steps["left"]["finishedAt"], steps["right"]["finishedAt"]
    )


def test_retries_then_succeeds(ops) -> None:
    client, fleet, _ = ops
    fleet.add("flaky", Behaviour(kind="fail", failures=2))
    create(client, template("retry", task("t", retry={"maxAttempts": 3, "backoffSeconds": 0.05})))
    detail = settle(client, run(client, "retry"))
    assert detail["status"] == "completed"
    t = by_step(detail)["t"]
    assert t["attempts"] == 3
    assert [a["outcome"] for a in t["history"]] == ["agent_error", "agent_error", "completed"]
    assert t["history"][0]["error"] == "boom #1"


def test_exhausted_retries_run_the_fallback(ops) -> None:
    client, fleet, _ = ops
    fleet.add("broken", Behaviour(kind="fail", failures=99, capabilities=["primary"]))
    fleet.add("backup", Behaviour(capabilities=["backup"]))
    create(
        client,
        template(
            "fb",
            task(
                "main",
                agentCapability="primary",
                retry={"maxAttempts": 2, "backoffSeconds": 0.01},
                fallbackTaskId="plan-b",
                nextTaskId="after",
            ),
            task("plan-b", agentCapability="backup", parameters={"why": "${input.reason}"}),
            task(
                "after", agentCapability="backup", parameters={"got": "${tasks.main.result.agent}"}
            ),
        ),
    )
    detail = settle(client, run(client, "fb", {"reason": "x"}))
    assert detail["status"] == "completed"
    steps = by_step(detail)
    assert steps["main"]["status"] == "failed" and steps["main"]["attempts"] == 2
    assert steps["plan-b"]["status"] == "completed" and steps["plan-b"]["fallbackFor"] == "main"
    assert steps["after"]["resolvedParameters"] == {"got": "backup"}
    assert client.get("/v1/opscore/dead-letters").json()["total"] == 0


def test_unused_fallback_is_cancelled_as_not_needed(ops) -> None:
    client, fleet, _ = ops
    fleet.add("ok")
    create(client, template("fb2", task("main", fallbackTaskId="spare"), task("spare")))
    detail = settle(client, run(client, "fb2"))
    assert detail["status"] == "completed"
    spare = by_step(detail)["spare"]
    assert spare["status"] == "cancelled" and spare["cancelReason"] == "not needed"


def test_dead_letter_then_redrive_finishes_the_run(ops) -> None:
    client, fleet, _ = ops
    fleet.add("flaky", Behaviour(kind="fail", failures=2))
    create(
        client,
        template(
            "dl",
            task("first", retry={"maxAttempts": 2, "backoffSeconds": 0.01}, nextTaskId="second"),
            task("second"),
        ),
    )
    sid = run(client, "dl")
    failed = settle(client, sid)
    assert failed["status"] == "failed" and "first" in failed["error"]
    steps = by_step(failed)
    assert steps["first"]["status"] == "failed"
    assert steps["second"]["status"] == "cancelled"
    letters = client.get("/v1/opscore/dead-letters").json()
    assert letters["total"] == 1 and letters["items"][0]["taskId"] == steps["first"]["taskId"]

    redriven = client.post(f"/v1/opscore/dead-letters/{steps['first']['taskId']}/redrive")
    assert redriven.status_code == 200, redriven.text
    detail = settle(client, sid)
    assert detail["status"] == "completed"
    assert by_step(detail)["second"]["status"] == "completed"
    assert client.get("/v1/opscore/dead-letters").json()["total"] == 0
    again = client.post(f"/v1/opscore/dead-letters/{steps['first']['taskId']}/redrive")
    assert again.status_code == 404


def test_hanging_agent_times_out_and_the_task_dead_letters(ops) -> None:
    client, fleet, _ = ops
    fleet.add("sleepy", Behaviour(kind="hang"))
    create(client, template("slow", task("t", timeoutSeconds=0.3, retry={"maxAttempts": 1})))
    detail = settle(client, run(client, "slow"))
    assert detail["status"] == "failed"
    t = by_step(detail)["t"]
    assert t["history"][0]["outcome"] == "timeout" and "timed out" in t["error"]


def test_vanished_agent_goes_offline_and_its_task_moves_to_another(fleet_factory) -> None:
    # the healthy agent heartbeats well inside the 1 s limit; the ghost stops reporting at all
    server, fleet = fleet_factory(make_settings(agent_offline_after=1.0), heartbeat=0.2)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        fleet.add("ghost", Behaviour(kind="vanish"))
        create(client, template("v", task("t")))
        sid = run(client, "v")
        wait_for(lambda: fleet.per_agent["ghost"] == 1)
        fleet.add("steady")  # a healthy agent arrives
        detail = settle(client, sid, timeout=15)
        assert detail["status"] == "completed"
        t = by_step(detail)["t"]
        assert t["agentId"] == "steady"
        assert t["history"][0]["outcome"] == "agent_lost" and t["unchargedAttempts"] == 1
        ghost = client.get("/v1/opscore/agents/ghost").json()
        assert ghost["state"] == "offline"
        history = client.get("/v1/opscore/agent/ghost/state/history").json()["items"]
        assert history[0]["state"] == "offline" and "unreachable" in history[0]["reason"]


def test_deregistering_an_agent_mid_task_requeues_it(ops) -> None:
    client, fleet, _ = ops
    fleet.add("leaver", Behaviour(kind="hang"))
    create(client, template("d", task("t")))
    sid = run(client, "d")
    wait_for(lambda: fleet.per_agent["leaver"] == 1)
    assert client.delete("/v1/opscore/agents/leaver").status_code == 200
    fleet.add("stayer")
    detail = settle(client, sid)
    assert detail["status"] == "completed" and by_step(detail)["t"]["agentId"] == "stayer"


def test_agent_without_task_ids_is_tracked_by_state_alone(ops) -> None:
    client, fleet, _ = ops
    fleet.add("plain", Behaviour(with_task_id=False))
    create(client, template("p", task("a", nextTaskId="b"), task("b")))
    detail = settle(client, run(client, "p"))
    assert detail["status"] == "completed"
    assert all(t["status"] == "completed" for t in detail["tasks"])


def test_explicit_result_report(ops) -> None:
    client, fleet, _ = ops
    fleet.add("exp", Behaviour(kind="explicit"))
    create(client, template("e", task("t", parameters={"x": 1})))
    detail = settle(client, run(client, "e"))
    t = by_step(detail)["t"]
    assert detail["status"] == "completed" and t["result"]["echo"] == {"x": 1}
    late = client.post(
        f"/v1/opscore/tasks/{t['taskId']}/result", json={"status": "failed", "error": "late"}
    )
    assert late.status_code == 409 and late.json()["error"]["code"] == "TASK_NOT_IN_FLIGHT"
    unknown = client.post("/v1/opscore/tasks/task-nope/result", json={"status": "completed"})
    assert unknown.status_code == 404
    assert client.get(f"/v1/opscore/tasks/{t['taskId']}").json()["status"] == "completed"


def test_dispatch_errors_are_retried(ops) -> None:
    client, fleet, _ = ops
    fleet.add("grumpy", Behaviour(kind="reject"))
    create(client, template("r", task("t", retry={"maxAttempts": 2, "backoffSeconds": 0.01})))
    detail = settle(client, run(client, "r"))
    assert detail["status"] == "failed"
    outcomes = [a["outcome"] for a in by_step(detail)["t"]["history"]]
    assert outcomes == ["dispatch_error", "dispatch_error"]


def test_pinned_trigger_runs_on_that_agent_inline_or_by_id(ops) -> None:
    client, fleet, _ = ops
    fleet.add("pinned", Behaviour(capabilities=["work", "other"]))
    fleet.add("free")
    body = {"workflowDefinition": template("inline", task("t")), "initialPayload": {"k": "v"}}
    response = client.post("/v1/opscore/agent/pinned/workflow", json=body)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["workflowId"] == "inline" and accepted["sessionId"]
    detail = settle(client, accepted["sessionId"])
    assert detail["status"] == "completed" and by_step(detail)["t"]["agentId"] == "pinned"
    assert detail["agentId"] == "pinned" and detail["initialPayload"] == {"k": "v"}

    create(client, template("stored", task("t")))
    by_id = client.post(
        "/v1/opscore/agent/pinned/workflow", json={"workflowDefinitionId": "stored"}
    )
    assert settle(client, by_id.json()["sessionId"])["status"] == "completed"

    assert (
        client.post(
            "/v1/opscore/agent/nobody/workflow", json={"workflowDefinitionId": "stored"}
        ).status_code
        == 404
    )
    neither = client.post("/v1/opscore/agent/pinned/workflow", json={"initialPayload": {}})
    assert neither.status_code == 400 and neither.json()["error"]["code"] == "WORKFLOW_REQUIRED"
    missing = client.post(
        "/v1/opscore/agent/pinned/workflow", json={"workflowDefinitionId": "nope"}
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "WORKFLOW_NOT_FOUND"


def test_idempotency_key_returns_the_original_run(ops) -> None:
    client, fleet, _ = ops
    fleet.add("a")
    create(client, template("idem", task("t")))
    headers = {"Idempotency-Key": "order-42"}
    first = client.post("/v1/opscore/workflows/idem/runs", json={}, headers=headers).json()
    second = client.post("/v1/opscore/workflows/idem/runs", json={}, headers=headers).json()
    assert second["sessionId"] == first["sessionId"] and second["duplicate"] is True
    assert client.get("/v1/opscore/sessions").json()["total"] == 1


def test_cancel_stops_a_run_and_ignores_late_reports(ops) -> None:
    client, fleet, _ = ops
    fleet.add("slow", Behaviour(work_seconds=0.5))
    create(client, template("c", task("a", nextTaskId="b"), task("b")))
    sid = run(client, "c")
    wait_for(lambda: fleet.per_agent["slow"] == 1)
    cancelled = client.post(f"/v1/opscore/sessions/{sid}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert {t["status"] for t in cancelled.json()["tasks"]} == {"cancelled"}
    wait_for(lambda: client.get("/v1/opscore/agents/slow").json()["state"] == "idle")
    detail = client.get(f"/v1/opscore/sessions/{sid}").json()
    assert detail["status"] == "cancelled" and fleet.per_agent["slow"] == 1
    again = client.post(f"/v1/opscore/sessions/{sid}/cancel")
    assert again.status_code == 409


def test_waits_for_an_available_agent(ops) -> None:
    client, fleet, _ = ops
    create(client, template("w", task("t", agentCapability="rare")))
    sid = run(client, "w")
    detail = client.get(f"/v1/opscore/sessions/{sid}").json()
    assert by_step(detail)["t"]["status"] == "queued"
    fleet.add("rare-one", Behaviour(capabilities=["rare"]))
    assert settle(client, sid)["status"] == "completed"


def test_a_task_for_a_free_agent_is_found_behind_tasks_that_wait(ops) -> None:
    """The dispatcher reads the queue in chunks; a hundred tasks no agent can take yet must
    not hide the task behind them from the agent that is free."""
    client, fleet, _ = ops
    fleet.add("worker")
    create(client, template("rare", task("t", agentCapability="rare")))
    create(client, template("common", task("t")))
    waiting = [run(client, "rare") for _ in range(100)]
    sid = run(client, "common")
    assert settle(client, sid)["status"] == "completed"
    first = client.get(f"/v1/opscore/sessions/{waiting[0]}").json()
    assert by_step(first)["t"]["status"] == "queued"


def test_a_backlog_longer_than_a_batch_cannot_starve_a_free_agent(ops) -> None:
    """More tasks than one pass examines wait for an agent that is busy for good; each task
    for the free agent behind them still goes out, a few passes later at most."""
    client, fleet, _ = ops
    fleet.add("stuck", Behaviour(kind="hang", capabilities=["slow"]))
    fleet.add("free")
    create(client, template("slow", task("t", agentCapability="slow")))
    create(client, template("fast", task("t", agentCapability="work")))
    run(client, "slow")  # "stuck" takes it and never finishes
    wait_for(lambda: fleet.per_agent["stuck"] == 1)
    for _ in range(BATCH + 50):
        run(client, "slow")
    for _ in range(3):
        assert settle(client, run(client, "fast"), timeout=15)["status"] == "completed"
    assert fleet.per_agent["stuck"] == 1


def test_hand_overs_from_a_sender_thread_run_whole_flows_and_stop_with_the_app(
    fleet_factory,
) -> None:
    """OPSCORE_DISPATCH_THREAD: the same flows, handed over from the sender thread's loop,
    including a refused hand-over that is retried; the thread ends with the app."""
    server, fleet = fleet_factory(make_settings(dispatch_thread=True))
    fleet.add("steady")
    fleet.add("refuser", Behaviour(kind="reject", capabilities=["picky"]))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        create(c, template("chain", task("a", nextTaskId="b"), task("b")))
        create(
            c,
            template(
                "picky",
                task(
                    "p", agentCapability="picky", retry={"maxAttempts": 2, "backoffSeconds": 0.01}
                ),
            ),
        )
        runs = [run(c, "chain") for _ in range(10)]
        refused = run(c, "picky")
        assert all(settle(c, sid)["status"] == "completed" for sid in runs)
        failed = settle(c, refused)
        assert failed["status"] == "failed"
        attempts = by_step(failed)["p"]["history"]
        assert [a["outcome"] for a in attempts] == ["dispatch_error", "dispatch_error"]
    assert any(t.name == "opscore-sender" for t in threading.enumerate())
    server.stop()  # stopping twice is harmless: the fixture stops it again
    wait_for(lambda: not any(t.name == "opscore-sender" for t in threading.enumerate()))


def test_dispatch_through_agentkit_relay(fleet_factory, server_factory) -> None:
    from .fakes import FakeFleet

    # AgentKit must be up before Ops-Core knows its URL, and the fleet needs Ops-Core's URL.
    holder: dict = {}
    relay_fleet = FakeFleet("http://127.0.0.1:1", KEY)  # URL fixed below
    relay = FakeAgentKit(relay_fleet).start()
    try:
        server = server_factory(
            make_settings(agentkit_api_url=relay.server.url, dispatch_via="agentkit")
        )
        relay_fleet.opscore_url = server.url
        relay_fleet.start()
        holder["fleet"] = relay_fleet
        relay_fleet.add("3f2b9c1e-7a44-4d0e-9a51-2f6f0c8d1e77")
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}
        ) as client:
            create(
                client,
                template(
                    "via", task("summarize", parameters={"url": "https://example.org/report"})
                ),
            )
            detail = settle(client, run(client, "via"))
        assert detail["status"] == "completed"
        sent = relay.received[0]
        assert sent["agentId"] == "3f2b9c1e-7a44-4d0e-9a51-2f6f0c8d1e77"
        assert sent["body"]["messageType"] == "workflow_task"
        assert sent["body"]["opscore_task_id"] == detail["tasks"][0]["taskId"]
    finally:
        relay.stop()
        relay_fleet.stop()


def test_agentkit_404_for_unknown_agent_is_a_dispatch_error(server_factory) -> None:
    from .fakes import FakeFleet

    fleet = FakeFleet("http://127.0.0.1:1", KEY)
    relay = FakeAgentKit(fleet).start()
    try:
        server = server_factory(
            make_settings(agentkit_api_url=relay.server.url, dispatch_via="agentkit")
        )
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}
        ) as client:
            client.post(
                "/v1/opscore/agents",
                json={"agentId": "unknown-to-agentkit", "agentName": "x", "capabilities": ["work"]},
            )
            client.post(
                "/v1/opscore/agent/unknown-to-agentkit/state",
                json={
                    "agentId": "unknown-to-agentkit",
                    "timestamp": "2026-11-24T10:00:00Z",
                    "state": "idle",
                },
            )
            create(client, template("k", task("t", retry={"maxAttempts": 1})))
            detail = settle(client, run(client, "k"))
        assert detail["status"] == "failed"
        assert "404" in by_step(detail)["t"]["error"]
    finally:
        relay.stop()


def test_every_route_that_starts_a_run_lets_the_pass_it_woke_go_first(ops, monkeypatch) -> None:
    """The gateway's fast trigger, the documented FastAPI route (an empty body goes there)
    and the prototype's pinned trigger all start a run through the workflow service, which
    gives a pass the start woke its first turns before the answer
    (``Wakeup.let_the_woken_pass_go_first``; tests/test_dispatch_sleep.py has the order)."""
    from opscore.dispatch.wakeup import Wakeup

    calls: list[str] = []
    original = Wakeup.let_the_woken_pass_go_first

    async def recorded(self: Wakeup) -> None:
        # who asked (reports ask too): the service method a route called, past its helper
        caller = sys._getframe(1)
        while caller.f_code.co_name.startswith("_") and caller.f_back is not None:
            caller = caller.f_back
        calls.append(caller.f_code.co_name)
        await original(self)

    client, fleet, _ = ops
    fleet.add("someone")
    monkeypatch.setattr(Wakeup, "let_the_woken_pass_go_first", recorded)
    create(client, template("stored", task("t")))
    fast = client.post("/v1/opscore/workflows/stored/runs", json={})
    documented = client.post("/v1/opscore/workflows/stored/runs", content=b"")
    pinned = client.post(
        "/v1/opscore/agent/someone/workflow", json={"workflowDefinitionId": "stored"}
    )
    assert [r.status_code for r in (fast, documented, pinned)] == [202, 202, 202]
    starts = [c for c in calls if c.startswith("run_")]
    assert starts == ["run_template", "run_template", "run_for_agent"]
