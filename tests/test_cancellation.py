"""Cancellation that reaches the agent: a cancel_task message to push agents (recorded as
acknowledged or ignored), on every store."""

from __future__ import annotations

from typing import Any

from opscore.dispatch.cancels import cancel_message
from opscore.models import TaskRun, utcnow

from .fakes import Behaviour
from .servers import wait_for
from .test_real_agents import _client, _known_and_idle, agents, store  # noqa: F401
from .workflow_helpers import by_step, create, run, settle, task, template


def running_task(client: Any, session_id: str) -> dict[str, Any]:
    def on_agent() -> dict[str, Any] | None:
        found = client.get(f"/v1/opscore/sessions/{session_id}").json()["tasks"][0]
        return found if found["status"] in ("dispatched", "running") else None

    return wait_for(on_agent, timeout=20)


def test_a_push_agent_gets_a_cancel_message_with_the_tasks_ids(ops) -> None:
    client, fleet, _ = ops
    fleet.add("busy", Behaviour(kind="hang"))
    create(client, template("long", task("a")))
    sid = run(client, "long")
    working = running_task(client, sid)

    assert client.post(f"/v1/opscore/sessions/{sid}/cancel").status_code == 200
    wait_for(lambda: fleet.cancels, timeout=10)

    [message] = fleet.cancels
    assert message["messageType"] == "cancel_task" and message["senderId"] == "opscore"
    assert message["opscore_task_id"] == working["taskId"]
    assert message["opscore_session_id"] == sid
    assert message["sessionContext"]["sessionId"] == sid
    assert message["payload"] == {"task_name": "a", "reason": "session cancelled"}
    cancelled = wait_for(
        lambda: (
            (t := client.get(f"/v1/opscore/tasks/{working['taskId']}").json())["cancelDelivery"]
            and t
        )
    )
    assert cancelled["cancelDelivery"] == "acknowledged"
    assert cancelled["cancelAcknowledgedAt"] is not None


def test_a_task_cancelled_before_it_reached_an_agent_sends_nothing(ops) -> None:
    client, fleet, _ = ops
    create(client, template("nobody", task("a", agentCapability="nobody-has-it")))
    sid = run(client, "nobody")
    assert client.post(f"/v1/opscore/sessions/{sid}/cancel").status_code == 200
    detail = settle(client, sid)
    assert by_step(detail)["a"]["cancelDelivery"] is None and fleet.cancels == []


def test_agentkits_example_agent_ignores_the_cancel_and_its_reports_harm_nothing(
    store,  # noqa: F811
    server_factory,
    agents,  # noqa: F811
) -> None:
    server = server_factory(store())
    agent = agents(server, "ak-1", work_seconds=1.0)
    with _client(server) as client:
        _known_and_idle(client, "ak-1")
        create(client, template("one", task("a")))
        sid = run(client, "one")
        working = running_task(client, sid)
        client.post(f"/v1/opscore/sessions/{sid}/cancel")
        ignored = wait_for(
            lambda: (
                (t := client.get(f"/v1/opscore/tasks/{working['taskId']}").json())["cancelDelivery"]
                and t
            ),
            timeout=20,
        )
        assert ignored["cancelDelivery"] == "ignored"
        assert ignored["cancelAcknowledgedAt"] is None
        assert [m["messageType"] for m in agent.received][-1] == "cancel_task"
        # the agent's "active"/"idle" after the ignored message complete nothing else
        next_run = run(client, "one", {"n": 2})
        detail = settle(client, next_run, timeout=30)
        assert detail["status"] == "completed"
        assert by_step(detail)["a"]["result"] is not None


def test_the_cancel_message_mirrors_the_task_message() -> None:
    task = TaskRun(
        task_id="task-1",
        session_id="s-1",
        step_id="fetch",
        timeout_seconds=1,
        max_attempts=1,
        backoff_seconds=1,
        max_backoff_seconds=1,
        created_at=utcnow(),
    )
    message = cancel_message(task, "session cancelled")
    assert set(message) == {
        "senderId",
        "timestamp",
        "messageType",
        "payload",
        "sessionContext",
        "task_name",
        "opscore_session_id",
        "opscore_task_id",
    }
    assert message["messageType"] == "cancel_task" and message["task_name"] == "fetch"
