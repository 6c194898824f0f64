"""Real agents served as they behave: AgentKit's example agent (work inside the handler, result
in the answer, reports after it, no heartbeat, registration after the first report), on every
store. Time settings are small; no test waits more than a few seconds."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .agentkit_agent import AgentKitAgent
from .conftest import KEY, STORES, WEBHOOK_SECRET, make_settings, store_url
from .servers import ServerThread
from .workflow_helpers import by_step, create, run, settle, task, template, wait_for


@pytest.fixture(params=STORES)
def store(request, tmp_path) -> Callable[..., Any]:
    """Settings on each storage backend."""

    def settings(**overrides: Any) -> Any:
        if "storage_url" not in overrides:
            overrides["storage_url"] = store_url(request, request.param, tmp_path)
        return make_settings(**overrides)

    return settings


@pytest.fixture
def agents() -> Iterator[Callable[..., AgentKitAgent]]:
    started: list[AgentKitAgent] = []

    def start(server: ServerThread, agent_id: str, **kwargs: Any) -> AgentKitAgent:
        kwargs.setdefault("capabilities", ["work"])
        agent = AgentKitAgent(
            server.url, KEY, agent_id=agent_id, webhook_secret=WEBHOOK_SECRET, **kwargs
        ).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.kill()


def _client(server: ServerThread) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)


def _known_and_idle(client: httpx.Client, agent_id: str) -> None:
    def ready() -> bool:
        response = client.get(f"/v1/opscore/agent/{agent_id}/state")
        return response.status_code == 200 and response.json()["state"] == "idle"

    wait_for(ready, timeout=10)


CHAIN = template(
    "chain",
    task("a", parameters={"text": "${input.topic}"}, nextTaskId="b"),
    task("b", parameters={"text": "${tasks.a.result}"}, nextTaskId="c"),
    task("c", parameters={"text": "${tasks.b.result}"}),
)


def test_agentkit_example_agent_runs_a_three_step_chain_passing_results(
    store, server_factory, agents
) -> None:
    # Given Ops-Core, and an AgentKit agent whose only idle report precedes its registration
    server = server_factory(store())
    agent = agents(server, "example-agent", work_seconds=0.05)
    with _client(server) as client:
        _known_and_idle(client, "example-agent")
        create(client, CHAIN)
        # When a three-step run passes each result to the next step
        detail = settle(client, run(client, "chain", {"topic": "agents"}))
        # Then every step ran once on it, with the results from its answers
        assert detail["status"] == "completed", detail
        steps = by_step(detail)
        assert steps["a"]["result"] == "a(agents)"
        assert steps["b"]["result"] == "b(a(agents))"
        assert steps["c"]["result"] == "c(b(a(agents)))"
        assert sorted(agent.task_ids()) == sorted(t["taskId"] for t in detail["tasks"])
        # the reports sent after each answer (active, idle, no task id) changed no outcome
        assert all(len(t["history"]) == 1 for t in detail["tasks"])
        # a second run after the agent's last report still finds it available
        assert settle(client, run(client, "chain", {"topic": "x"}))["status"] == "completed"


def test_an_idle_agent_silent_for_three_offline_windows_still_takes_a_run(
    server_factory, agents
) -> None:
    server = server_factory(make_settings(agent_offline_after=0.3))
    agent = agents(server, "quiet")
    with _client(server) as client:
        _known_and_idle(client, "quiet")
        create(client, template("one", task("t", parameters={"text": "hi"})))
        time.sleep(0.9)  # three offline windows of silence: it is probed, not dropped
        assert client.get("/v1/opscore/agent/quiet/state").json()["state"] == "idle"
        detail = settle(client, run(client, "one"))
        assert detail["status"] == "completed" and by_step(detail)["t"]["result"] == "t(hi)"
    # the probes were GETs: the agent's handler saw one message, the task
    assert [m["messageType"] for m in agent.received] == ["workflow_task"]


def test_a_handler_working_three_dispatch_timeouts_runs_each_task_once(
    store, server_factory, agents
) -> None:
    server = server_factory(store(dispatch_timeout=0.2))
    agent = agents(server, "slow", work_seconds=0.6)
    with _client(server) as client:
        _known_and_idle(client, "slow")
        create(client, template("two", task("a", nextTaskId="b"), task("b")))
        detail = settle(client, run(client, "two"))
    assert detail["status"] == "completed"
    assert len(agent.task_ids()) == 2 and len(set(agent.task_ids())) == 2


def test_a_task_running_three_offline_windows_on_a_reachable_agent_completes_once(
    store, server_factory, agents
) -> None:
    server = server_factory(store(agent_offline_after=0.25))
    agent = agents(server, "busy", work_seconds=0.8)
    with _client(server) as client:
        _known_and_idle(client, "busy")
        create(client, template("long", task("t", parameters={"text": "x"})))
        detail = settle(client, run(client, "long"))
        assert detail["status"] == "completed"
        t = by_step(detail)["t"]
        assert t["result"] == "t(x)" and len(t["history"]) == 1 and t["unchargedAttempts"] == 0
        assert client.get("/v1/opscore/agents/busy").json()["state"] != "offline"
    assert len(agent.task_ids()) == 1


def test_an_agent_killed_mid_task_is_found_unreachable_and_its_task_moves_on(
    server_factory, agents
) -> None:
    # probes after 0.3 s of silence, every 0.2 s; two misses make it offline
    server = server_factory(make_settings(agent_offline_after=0.3))
    doomed = agents(server, "doomed", answer_first=True, work_seconds=30)
    with _client(server) as client:
        _known_and_idle(client, "doomed")
        create(client, template("k", task("t", parameters={"text": "x"})))
        sid = run(client, "k")
        wait_for(lambda: len(doomed.task_ids()) == 1, timeout=10)
        killed_at = time.monotonic()
        doomed.kill()
        survivor = agents(server, "survivor")
        detail = settle(client, sid, timeout=20)
        found_in = time.monotonic() - killed_at
    assert detail["status"] == "completed"
    t = by_step(detail)["t"]
    assert t["agentId"] == "survivor" and t["history"][0]["outcome"] == "agent_lost"
    assert "unreachable" in t["history"][0]["error"]
    assert survivor.task_ids() == [t["taskId"]]
    # offline window + misses x interval (+ probe timeouts) = well under 5 s here
    assert found_in < 10


def test_an_agent_killed_during_the_hand_over_fails_that_attempt_and_the_retry_moves_on(
    server_factory, agents
) -> None:
    server = server_factory(make_settings())
    doomed = agents(server, "doomed", work_seconds=30)
    with _client(server) as client:
        _known_and_idle(client, "doomed")
        create(client, template("k", task("t")))
        sid = run(client, "k")
        wait_for(lambda: len(doomed.task_ids()) == 1, timeout=10)
        doomed.kill()  # the open hand-over's connection dies with it
        agents(server, "survivor")
        detail = settle(client, sid, timeout=20)
    assert detail["status"] == "completed" and by_step(detail)["t"]["agentId"] == "survivor"


def test_a_failed_attempt_then_success_on_the_same_pinned_agent_completes_the_run(
    store, server_factory, agents
) -> None:
    server = server_factory(store())
    agent = agents(server, "flaky", fail_first=1)
    with _client(server) as client:
        _known_and_idle(client, "flaky")
        response = client.post(
            "/v1/opscore/agent/flaky/workflow",
            json={"workflowDefinition": template("p", task("t", parameters={"text": "y"}))},
        )
        assert response.status_code == 202
        detail = settle(client, response.json()["sessionId"])
    assert detail["status"] == "completed", detail
    history = by_step(detail)["t"]["history"]
    assert [h["outcome"] for h in history] == ["dispatch_error", "completed"]
    assert "PROCESSING_ERROR: boom #1" in history[0]["error"]
    assert len(agent.task_ids()) == 2


def test_a_pinned_run_sends_a_task_the_pinned_agent_cannot_do_to_an_agent_that_can(
    store, server_factory, agents
) -> None:
    server = server_factory(store())
    agents(server, "writer", capabilities=["summarize"])
    agents(server, "linguist", capabilities=["translate"])
    with _client(server) as client:
        _known_and_idle(client, "writer")
        _known_and_idle(client, "linguist")
        definition = template(
            "mixed",
            task("sum", agentCapability="summarize", nextTaskId="tr"),
            task("tr", agentCapability="translate"),
        )
        response = client.post(
            "/v1/opscore/agent/writer/workflow", json={"workflowDefinition": definition}
        )
        detail = settle(client, response.json()["sessionId"])
    assert detail["status"] == "completed"
    steps = by_step(detail)
    assert steps["sum"]["agentId"] == "writer" and steps["tr"]["agentId"] == "linguist"


def test_agentkit_url_alone_does_not_route_tasks_through_agentkit(server_factory, agents) -> None:
    """Ops-Core shares AgentKit's .env, so AGENTKIT_API_URL is always set; AgentKit's /run
    cannot reach agents at the supported commit, so tasks go straight to agents by default."""
    server = server_factory(make_settings(agentkit_api_url="http://127.0.0.1:9"))
    agent = agents(server, "direct")
    with _client(server) as client:
        _known_and_idle(client, "direct")
        create(client, template("d", task("t")))
        assert settle(client, run(client, "d"))["status"] == "completed"
    assert len(agent.task_ids()) == 1


def test_a_late_result_for_an_attempt_that_timed_out_is_used_while_the_task_is_open(
    server_factory, agents
) -> None:
    # the first attempt times out after 1.5 s (time enough for the hand-over to reach the agent
    # on a slow machine; at 0.3 s it once did not); its retry waits 30 s in the queue
    server = server_factory(make_settings(retry_backoff_seconds=30, retry_max_backoff_seconds=30))
    agent = agents(server, "late", answer_first=True, work_seconds=30)
    with _client(server) as client:
        _known_and_idle(client, "late")
        create(client, template("late", task("t", timeoutSeconds=1.5)))
        sid = run(client, "late")
        wait_for(agent.task_ids, timeout=10)
        wait_for(
            lambda: (
                by_step(client.get(f"/v1/opscore/sessions/{sid}").json())["t"]["status"] == "queued"
            ),
            timeout=10,
        )
        [task_id] = agent.task_ids()
        response = client.post(
            f"/v1/opscore/tasks/{task_id}/result",
            json={"status": "completed", "result": "worth the wait", "agentId": "late"},
        )
        assert response.status_code == 200, response.text
        detail = settle(client, sid)
    assert detail["status"] == "completed"
    assert by_step(detail)["t"]["result"] == "worth the wait"


def test_reports_for_an_agent_that_never_registers_are_dropped_logged_and_counted(
    server_factory,
) -> None:
    server = server_factory(make_settings(pending_report_ttl=0.2))
    with _client(server) as client:
        response = client.post(
            "/v1/opscore/agent/never/state",
            json={"agentId": "never", "timestamp": "2026-11-24T10:00:00Z", "state": "idle"},
        )
        assert response.json()["status"] == "pending"

        def dropped() -> bool:
            metrics = client.get("/metrics").text
            return "opscore_pending_reports_dropped_total 1.0" in metrics

        wait_for(dropped, timeout=10)
        logs = client.get("/v1/opscore/logs", params={"agentId": "never"}).json()["items"]
        assert any(r["message"] == "agent.report_dropped" for r in logs)


def test_an_answer_held_through_an_outage_longer_than_the_timeout_runs_the_task_once(
    server_factory, agents
) -> None:
    """The agent answers with its result while the store refuses writes for longer than the
    task's timeout. When the store is back, the timeout sweep could run before the held answer
    is written and send the task again; it leaves the task to the answer instead."""
    from opscore.errors import StorageError
    from opscore.storage.memory import MemoryStorage

    class WritesDown(MemoryStorage):
        down = False

        async def update_task(self, *args: Any, **kwargs: Any):  # type: ignore[override]
            if self.down and kwargs.get("expect") is not None:
                raise StorageError("store away (test)")
            return await super().update_task(*args, **kwargs)

    storage = WritesDown()
    server = server_factory(make_settings(), storage=storage)
    agent = agents(server, "slowish", work_seconds=0.3)
    with _client(server) as client:
        _known_and_idle(client, "slowish")
        create(client, template("one", task("t", parameters={"text": "x"}, timeoutSeconds=1)))
        sid = run(client, "one")
        wait_for(lambda: agent.task_ids(), timeout=10)  # handed over: the agent works
        storage.down = True  # the answer comes while writes fail...
        time.sleep(2.0)  # ...for twice the task's timeout
        storage.down = False
        detail = settle(client, sid)
    assert detail["status"] == "completed", detail
    assert by_step(detail)["t"]["result"] == "t(x)"
    assert len(agent.task_ids()) == 1  # handed over once, not again after the timeout
