"""Usage added up per task, run, workflow and agent; budgets that hold tasks back or fail them,
and the event when one is used up; on every store."""

from __future__ import annotations

import time

import httpx
import pytest

from opscore.models import StateReport, TaskStatus, WorkflowDefinition, utcnow
from opscore.models.usage import usage_from

from .conftest import KEY, STORES, make_settings, store_url
from .event_receiver import EventReceiver
from .fakes import Behaviour
from .test_cancel_race import store, workflow_with_agent  # noqa: F401
from .workflow_helpers import by_step, create, run, settle, task, template

SPEND = {"inputTokens": 100, "outputTokens": 50, "costUsd": 0.01, "model": "m-1"}


@pytest.fixture(params=STORES)
def budgeted(request, fleet_factory, tmp_path):
    settings = make_settings(
        storage_url=store_url(request, request.param, tmp_path),
        events_allow_private_targets=True,
        default_max_attempts=1,
    )
    server, fleet = fleet_factory(settings)
    receiver = EventReceiver().start()
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=10) as client:
        yield client, fleet, receiver
    receiver.stop()


def three_steps(workflow_id: str) -> dict:
    return template(
        workflow_id,
        task("a"),
        task("b", dependsOn=["a"]),
        task("c", dependsOn=["b"]),
    )


def _usage(client, path: str) -> dict:
    return client.get(f"/v1/opscore{path}").json()


def test_usage_adds_up_per_run_workflow_and_agent(budgeted) -> None:
    client, fleet, _ = budgeted
    fleet.add("spender", Behaviour(usage=SPEND))
    create(client, three_steps("costly"))

    sid = run(client, "costly")
    detail = settle(client, sid)

    assert detail["status"] == "completed"
    # the run completes once its last step's usage is counted
    run_usage = client.get(f"/v1/opscore/sessions/{sid}/usage").json()
    assert run_usage == {"inputTokens": 300, "outputTokens": 150, "costUsd": 0.03, "reports": 3}
    workflow = client.get("/v1/opscore/usage/workflow/costly").json()
    assert workflow["total"]["inputTokens"] == 300 and workflow["today"]["reports"] == 3
    agent = client.get("/v1/opscore/usage/agent/spender").json()
    assert agent["total"]["outputTokens"] == 150
    assert by_step(detail)["a"]["usage"] == {
        "inputTokens": 100,
        "outputTokens": 50,
        "costUsd": 0.01,
        "reports": 1,
    }


def test_a_run_budget_fails_what_would_overspend_and_says_so(budgeted) -> None:
    client, fleet, receiver = budgeted
    fleet.add("spender", Behaviour(usage=SPEND))
    created = client.post(
        "/v1/opscore/subscriptions", json={"url": receiver.url, "events": ["budget.exceeded"]}
    )
    receiver.secrets.append(created.json()["secret"])
    create(client, three_steps("capped"))
    budget = client.put(
        "/v1/opscore/budgets/workflow/capped",
        json={"per": "run", "maxTokens": 300, "onExceed": "fail"},
    )
    assert budget.status_code == 200, budget.text

    detail = settle(client, run(client, "capped"))

    steps = by_step(detail)
    assert detail["status"] == "failed"
    assert steps["a"]["status"] == "completed" and steps["b"]["status"] == "completed"
    assert steps["c"]["status"] == "failed" and "budget" in steps["c"]["error"]
    assert steps["c"]["attempts"] == 0  # never handed over
    [event] = receiver.wait_for_types("budget.exceeded")
    data = event["event"]["data"]
    assert data["scope"] == "workflow" and data["id"] == "capped" and data["per"] == "run"
    assert data["spent"]["inputTokens"] + data["spent"]["outputTokens"] == 300


def test_a_day_budget_holds_tasks_until_it_is_raised(budgeted) -> None:
    client, fleet, _ = budgeted
    fleet.add("spender", Behaviour(usage=SPEND))
    create(client, template("daily", task("a")))
    client.put("/v1/opscore/budgets/workflow/daily", json={"per": "day", "maxCostUsd": 0.015})

    assert settle(client, run(client, "daily"))["status"] == "completed"
    assert settle(client, run(client, "daily"))["status"] == "completed"  # 0.01 < 0.015 at start
    assert _usage(client, "/usage/workflow/daily")["today"]["reports"] == 2
    held = run(client, "daily")
    time.sleep(1.0)  # several dispatcher passes: the task must stay queued
    assert client.get(f"/v1/opscore/sessions/{held}").json()["tasks"][0]["status"] == "queued"

    raised = client.put("/v1/opscore/budgets/workflow/daily", json={"per": "day", "maxCostUsd": 1})
    assert raised.status_code == 200
    assert settle(client, held)["status"] == "completed"
    [budget] = client.get("/v1/opscore/budgets").json()["items"]
    assert budget["maxCostUsd"] == 1 and budget["onExceed"] == "wait"


def test_an_agent_over_its_budget_gets_no_more_work(budgeted) -> None:
    client, fleet, _ = budgeted
    fleet.add("thrifty", Behaviour(usage=SPEND))
    create(client, template("one", task("a")))
    client.put("/v1/opscore/budgets/agent/thrifty", json={"maxTokens": 150})
    assert settle(client, run(client, "one"))["status"] == "completed"  # spends 150
    assert _usage(client, "/usage/agent/thrifty")["total"]["reports"] == 1
    held = run(client, "one")
    time.sleep(1.0)
    assert client.get(f"/v1/opscore/sessions/{held}").json()["tasks"][0]["status"] == "queued"
    assert client.delete("/v1/opscore/budgets/agent/thrifty/day").status_code == 204
    assert settle(client, held)["status"] == "completed"


def test_budgets_are_checked(client) -> None:
    per_run = client.put("/v1/opscore/budgets/agent/x", json={"per": "run", "maxTokens": 5})
    assert per_run.status_code == 422 and per_run.json()["error"]["code"] == "INVALID_BUDGET"
    nothing = client.put("/v1/opscore/budgets/workflow/x", json={"per": "day"})
    assert nothing.status_code == 422
    assert client.delete("/v1/opscore/budgets/workflow/x/day").status_code == 404
    wrong = client.get("/v1/opscore/usage/team/x")
    assert wrong.status_code == 422
    empty = client.get("/v1/opscore/usage/workflow/none").json()
    assert empty["total"] == {"inputTokens": 0, "outputTokens": 0, "costUsd": 0.0, "reports": 0}


@pytest.mark.parametrize("by", ["report", "answer"])
async def test_a_step_s_usage_counts_before_its_next_step_is_queued_or_its_run_ends(
    store,  # noqa: F811
    by: str,
) -> None:
    """A completion that reports usage queues the run's next step, and completes the run,
    only once that usage is counted: written with the completion, the next step could be
    handed over (or the workflow's next run started) before a budget saw what was spent.
    ``by``: the agent's idle report names the task and carries its result and usage (an
    agent that names its tasks; AgentKit's example agent does not), or the hand-over's
    answer carries them (AgentKit's example agent answers with its result)."""
    workflow, states = await workflow_with_agent(store)
    counted_on: list[tuple[str, dict[str, str]]] = []
    record_usage = workflow.engine.record_usage

    async def noting_the_run(task, usage) -> None:
        session, tasks = await store.session_with_tasks(task.session_id)
        counted_on.append((session.status.value, {t.step_id: t.status.value for t in tasks}))
        await record_usage(task, usage)

    workflow.engine.record_usage = noting_the_run
    definition = WorkflowDefinition.model_validate(
        {
            "id": "w",
            "name": "w",
            "tasks": [
                {"taskId": "a", "name": "a"},
                {"taskId": "b", "name": "b", "dependsOn": ["a"]},
            ],
        }
    )
    sid = (await workflow.runs.start_run(definition, payload={})).session_id
    for _ in range(2):
        [queued] = [t for t in await store.session_tasks(sid) if t.status == TaskStatus.QUEUED]
        agent = await store.get_agent("x")
        started = await workflow.handovers.mark_dispatched(queued, agent, utcnow())
        assert started is not None
        if by == "answer":
            assert await workflow.outcomes.complete_task(
                started, {"ok": True}, usage=usage_from(SPEND)
            )
        else:
            details = {"opscore_task_id": started.task_id, "result": {"ok": True}, "usage": SPEND}
            report = StateReport(agentId="x", timestamp=utcnow(), state="idle", details=details)
            await states.report_state("x", report)
    assert counted_on == [
        ("running", {"a": "completed", "b": "pending"}),
        ("running", {"a": "completed", "b": "completed"}),
    ]
    session = await store.get_session(sid)
    assert session is not None and session.status.value == "completed"
    assert (await workflow.usage.run_usage(sid)).reports == 2
