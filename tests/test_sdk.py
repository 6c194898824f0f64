"""The SDK against a live server, in sync/async pairs, plus its error and retry rules."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

import opscore.client as sdk
from opscore.client import AsyncOpsCoreClient, OpsCoreClient
from opscore.models import Agent, Page, SessionDetail

from .conftest import KEY
from .fakes import Behaviour
from .workflow_helpers import task, template


@pytest.fixture
def live(fleet_factory):
    server, fleet = fleet_factory()
    fleet.add("worker", Behaviour())
    return server, fleet


def test_exported_members() -> None:
    assert set(sdk.__all__) == {
        "APIConnectionError",
        "APIError",
        "APIStatusError",
        "APITimeoutError",
        "AsyncOpsCoreClient",
        "AuthenticationError",
        "BadRequestError",
        "ConflictError",
        "InternalServerError",
        "NotFoundError",
        "OpsCoreClient",
        "PermissionDeniedError",
        "RateLimitError",
        "UnprocessableEntityError",
    }
    for name in sdk.__all__:
        assert hasattr(sdk, name)


def test_sync_client_covers_the_whole_path(live) -> None:
    server, _ = live
    with OpsCoreClient(server.url, KEY) as ops:
        assert ops.health()["status"] == "ok"
        agent = ops.register_agent(
            "helper", agent_id="helper-1", capabilities=["other"], heartbeat_interval=30
        )
        assert isinstance(agent, Agent) and agent.heartbeat_interval_seconds == 30
        assert ops.get_state("helper-1").state is None  # registered, nothing reported yet
        assert ops.report_state("helper-1", "idle").status == "success"
        assert ops.heartbeat("helper-1").state == "idle"
        assert ops.get_state("helper-1").state == "idle"
        assert ops.state_history("helper-1").total == 1
        page = ops.list_agents(capability="work")
        assert isinstance(page, Page) and [a.agent_id for a in page.items] == ["worker"]
        ops.create_workflow(template("sdk", task("a", nextTaskId="b"), task("b")))
        assert [w.id for w in ops.list_workflows().items] == ["sdk"]
        assert ops.get_workflow("sdk").tasks[0].task_id == "a"
        run = ops.run_workflow("sdk", {"x": 1})
        done = ops.wait_for_session(run.session_id, timeout=20, poll_interval=0.05)
        assert isinstance(done, SessionDetail) and done.status == "completed"
        assert ops.get_task(done.tasks[0].task_id).status == "completed"
        timeline = ops.session_timeline(run.session_id)
        assert [e.event for e in timeline.events if e.source == "run"] == [
            "run.started",
            "run.completed",
        ]
        assert ops.list_sessions(status="completed").total == 1
        adhoc = ops.start_session(agent_id="helper-1", name="chat")
        assert ops.update_session(adhoc.session_id, status="completed").status == "completed"
        assert ops.list_dead_letters().total == 0
        assert ops.purge(keep=1000).removed == 0
        assert ops.logs(level="INFO", limit=5).items
        ops.delete_workflow("sdk")
        assert ops.deregister_agent("helper-1").agent_id == "helper-1"


def test_async_client_covers_the_same_path(live) -> None:
    server, _ = live

    async def scenario() -> None:
        async with AsyncOpsCoreClient(server.url, KEY) as ops:
            assert (await ops.health())["status"] == "ok"
            agent = await ops.register_agent("helper", agent_id="helper-1")
            assert agent.agent_id == "helper-1"
            assert (await ops.get_state("helper-1")).state is None
            assert (await ops.report_state("helper-1", "idle")).state == "idle"
            assert (await ops.heartbeat("helper-1")).state == "idle"
            await ops.create_workflow(
                "id: asdk\ntasks:\n  - taskId: a\n    agentCapability: work\n"
            )
            run = await ops.trigger_workflow("worker", workflow_id="asdk", payload={"y": 2})
            done = await ops.wait_for_session(run.session_id, timeout=20, poll_interval=0.05)
            assert done.status == "completed" and done.agent_id == "worker"
            timeline = await ops.session_timeline(run.session_id)
            assert {e.step_id for e in timeline.events if e.source == "attempt"} == {"a"}
            with pytest.raises(sdk.NotFoundError):
                await ops.get_agent("nobody")
            assert (await ops.purge(keep=0)).removed == 1

    asyncio.run(scenario())


GATED = """
id: gated
tasks:
  - {taskId: review, kind: approval, wait: {prompt: go?}}
  - {taskId: paid, kind: signal, wait: {signal: paid}, dependsOn: [review]}
"""


def test_sync_client_decides_approvals_and_sends_signals(live) -> None:
    server, _ = live
    with OpsCoreClient(server.url, KEY) as ops:
        ops.create_workflow(GATED)
        sid = ops.run_workflow("gated").session_id
        waiting = _poll(lambda: ops.list_waiting(kind="approval").items)
        assert waiting[0].prompt == "go?" and waiting[0].session_id == sid
        with pytest.raises(sdk.ConflictError):
            ops.send_signal(sid, "paid")
        approved = ops.approve(waiting[0].task_id, comment="yes", payload={"k": 1})
        assert approved.decision is not None and approved.decision.payload == {"k": 1}
        _poll(lambda: ops.list_waiting(kind="signal", session_id=sid).items)
        [paid] = ops.send_signal(sid, "paid", payload={"eur": 3})
        assert paid.result["payload"] == {"eur": 3}
        assert ops.wait_for_session(sid, timeout=20, poll_interval=0.05).status == "completed"


def test_async_client_rejects_a_step(live) -> None:
    server, _ = live

    async def scenario() -> None:
        async with AsyncOpsCoreClient(server.url, KEY) as ops:
            await ops.create_workflow(GATED)
            sid = (await ops.run_workflow("gated")).session_id
            for _ in range(400):
                page = await ops.list_waiting(session_id=sid)
                if page.items:
                    break
                await asyncio.sleep(0.05)
            rejected = await ops.reject(page.items[0].task_id, comment="no")
            assert rejected.status == "failed" and rejected.error == "rejected by admin-1: no"
            done = await ops.wait_for_session(sid, timeout=20, poll_interval=0.05)
            assert done.status == "failed"

    asyncio.run(scenario())


def test_sync_client_manages_schedules_and_subscriptions(live) -> None:
    server, _ = live
    with OpsCoreClient(server.url, KEY) as ops:
        ops.create_workflow("id: tick\ntasks:\n  - {taskId: a, agentCapability: work}\n")
        schedule = ops.create_schedule("tick", cron="@hourly", schedule_id="hourly")
        assert schedule.description == "At the start of every hour"
        assert ops.update_schedule("hourly", interval_seconds=60).cron is None
        assert ops.pause_schedule("hourly").paused
        assert not ops.resume_schedule("hourly").paused
        assert ops.list_schedules().total == 1
        run = ops.trigger_schedule("hourly")
        assert ops.get_schedule("hourly").last_session_id == run.session_id
        ops.delete_schedule("hourly")
        with pytest.raises(sdk.NotFoundError):
            ops.get_schedule("hourly")

        created = ops.create_subscription("https://93.184.215.14/x", ["run.failed"])
        assert created.secret.startswith("whsec_")
        sid = created.subscription_id
        assert not ops.update_subscription(sid, active=False).active
        assert ops.ping_subscription(sid).event.type == "ping"
        [delivery] = ops.list_deliveries(sid).items
        assert ops.redeliver(sid, delivery.delivery_id).status == "pending"
        assert ops.list_subscriptions().total == 1 and ops.get_subscription(sid).url
        ops.delete_subscription(sid)
        with pytest.raises(sdk.UnprocessableEntityError):
            ops.create_subscription("http://10.0.0.1/x", ["run.failed"])


def test_sync_client_reads_usage_and_manages_budgets(live) -> None:
    server, _ = live
    with OpsCoreClient(server.url, KEY) as ops:
        budget = ops.set_budget("workflow", "w", per="run", max_tokens=10, on_exceed="fail")
        assert budget.per == "run" and budget.on_exceed == "fail"
        assert ops.list_budgets().total == 1
        assert ops.get_usage("agent", "nobody").total.reports == 0
        ops.remove_budget("workflow", "w", "run")
        with pytest.raises(sdk.NotFoundError):
            ops.remove_budget("workflow", "w", "run")


def _poll(read, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (found := read()):
        assert time.monotonic() < deadline, "nothing came"
        time.sleep(0.05)
    return found


def test_errors_carry_status_code_message_and_request_id(live) -> None:
    server, _ = live
    with OpsCoreClient(server.url, KEY) as ops:
        with pytest.raises(sdk.NotFoundError) as caught:
            ops.get_agent("ghost")
        error = caught.value
        assert error.status_code == 404 and error.code == "AGENT_NOT_FOUND"
        assert "ghost" in error.message and error.request_id
        with pytest.raises(sdk.UnprocessableEntityError):
            ops.report_state("worker", "dancing")
        with pytest.raises(sdk.ConflictError):
            ops.register_agent("other", agent_id="worker")  # id taken with other details
    with OpsCoreClient(server.url, "wrong-key") as bad, pytest.raises(sdk.AuthenticationError):
        bad.list_agents()


def test_missing_key_names_both_ways_to_pass_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPSCORE_API_KEY", raising=False)
    with pytest.raises(sdk.APIError, match=r"api_key=.*OPSCORE_API_KEY"):
        OpsCoreClient("http://127.0.0.1:1")


def test_key_and_url_fall_back_to_environment(monkeypatch: pytest.MonkeyPatch, live) -> None:
    server, _ = live
    monkeypatch.setenv("OPSCORE_API_URL", server.url)
    monkeypatch.setenv("OPSCORE_API_KEY", KEY)
    with OpsCoreClient() as ops:
        assert ops.list_agents().total == 1


def test_retries_503_and_connection_errors_but_not_other_errors() -> None:
    calls = {"n": 0}

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("refused")
        if calls["n"] == 2:
            return httpx.Response(503, json={"detail": "busy"})
        return httpx.Response(200, json={"status": "ok"})

    ops = OpsCoreClient(
        "http://opscore.test",
        "k",
        max_retries=2,
        http_client=httpx.Client(transport=httpx.MockTransport(flaky)),
    )
    ops._retry_delay = lambda attempt: 0  # type: ignore[method-assign]
    assert ops.health() == {"status": "ok"} and calls["n"] == 3

    posts = {"n": 0}

    def conflict(request: httpx.Request) -> httpx.Response:
        posts["n"] += 1
        return httpx.Response(
            409,
            json={
                "error": {"code": "AGENT_EXISTS", "message": "taken"},
                "detail": "taken",
                "requestId": "r1",
            },
        )

    ops = OpsCoreClient(
        "http://opscore.test",
        "k",
        http_client=httpx.Client(transport=httpx.MockTransport(conflict)),
    )
    with pytest.raises(sdk.ConflictError) as caught:
        ops.register_agent("x")
    assert (
        posts["n"] == 1 and caught.value.request_id == "r1" and caught.value.code == "AGENT_EXISTS"
    )

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    ops = OpsCoreClient(
        "http://opscore.test",
        "k",
        max_retries=1,
        http_client=httpx.Client(transport=httpx.MockTransport(down)),
    )
    ops._retry_delay = lambda attempt: 0  # type: ignore[method-assign]
    with pytest.raises(sdk.APIConnectionError):
        ops.health()


def test_run_triggers_always_carry_an_idempotency_key() -> None:
    seen: list[str] = []

    def capture(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("idempotency-key", ""))
        return httpx.Response(
            202, json={"status": "accepted", "message": "ok", "sessionId": "s", "workflowId": "w"}
        )

    ops = OpsCoreClient(
        "http://opscore.test", "k", http_client=httpx.Client(transport=httpx.MockTransport(capture))
    )
    ops.run_workflow("w")
    ops.run_workflow("w", idempotency_key="mine")
    assert len(seen[0]) == 36 and seen[1] == "mine"


def test_wait_for_session_times_out(live) -> None:
    server, fleet = live
    fleet.behaviours["worker"].kind = "hang"
    with OpsCoreClient(server.url, KEY) as ops:
        ops.create_workflow(template("h", task("a")))
        run = ops.run_workflow("h")
        with pytest.raises(TimeoutError):
            ops.wait_for_session(run.session_id, timeout=0.3, poll_interval=0.05)
