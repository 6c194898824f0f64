"""Approval and signal steps: waiting, deciding, timing out, and what later steps see."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from opscore.workflow.substitution import TemplateError
from opscore.workflow.templates import build_definition

from .fakes import Behaviour
from .servers import wait_for
from .workflow_helpers import by_step, create, run, settle, task, template


def approval(task_id: str, **fields: Any) -> dict[str, Any]:
    return {"taskId": task_id, "kind": "approval", **fields}


def signal_step(task_id: str, name: str, **fields: Any) -> dict[str, Any]:
    wait = {"signal": name, **fields.pop("wait", {})}
    return {"taskId": task_id, "kind": "signal", "wait": wait, **fields}


def waiting(client: httpx.Client, **query: str) -> list[dict[str, Any]]:
    return client.get("/v1/opscore/waiting", params=query).json()["items"]


def wait_listed(client: httpx.Client, session_id: str) -> dict[str, Any]:
    return wait_for(
        lambda: next((w for w in waiting(client) if w["sessionId"] == session_id), None),
        timeout=20,
    )


PUBLISH = template(
    "publish",
    task("draft", parameters={"topic": "${input.topic}"}),
    approval(
        "review",
        dependsOn=["draft"],
        parameters={"draft": "${tasks.draft.result.echo}"},
        wait={"prompt": "Publish the digest?"},
    ),
    task(
        "post",
        dependsOn=["review"],
        parameters={
            "channel": "${tasks.review.result.payload.channel}",
            "by": "${tasks.review.result.decidedBy}",
        },
    ),
)


def test_an_approved_step_lets_the_run_go_on_with_the_decision_as_its_result(ops) -> None:
    client, fleet, _ = ops
    fleet.add("worker", Behaviour())
    create(client, PUBLISH)
    sid = run(client, "publish", {"topic": "agents"})

    listed = wait_listed(client, sid)
    assert listed["kind"] == "approval" and listed["stepId"] == "review"
    assert listed["workflowId"] == "publish" and listed["prompt"] == "Publish the digest?"
    assert listed["parameters"] == {"draft": {"topic": "agents"}}
    assert listed["deadline"] is None and listed["onTimeout"] == "reject"
    assert client.get(f"/v1/opscore/sessions/{sid}").json()["status"] == "running"

    decided = client.post(
        f"/v1/opscore/tasks/{listed['taskId']}/approve",
        json={"comment": "ship it", "payload": {"channel": "#news"}},
    )
    assert decided.status_code == 200, decided.text
    detail = settle(client, sid)

    assert detail["status"] == "completed"
    review = by_step(detail)["review"]
    assert review["status"] == "completed"
    assert review["decision"]["outcome"] == "approved" and review["decision"]["approved"] is True
    assert (
        review["decision"]["decidedBy"] == "admin-1" and review["decision"]["comment"] == "ship it"
    )
    assert review["result"]["payload"] == {"channel": "#news"}
    assert by_step(detail)["post"]["resolvedParameters"] == {"channel": "#news", "by": "admin-1"}
    assert waiting(client) == []
    # deciding twice is a conflict, and changes nothing
    again = client.post(f"/v1/opscore/tasks/{listed['taskId']}/reject", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "TASK_NOT_WAITING"
    assert [m["task_name"] for m in fleet.received] == ["draft", "post"]


def test_a_rejection_fails_the_run_unless_the_step_continues_on_reject(ops) -> None:
    client, fleet, _ = ops
    fleet.add("worker", Behaviour())
    create(client, PUBLISH)
    create(
        client,
        template(
            "soft",
            approval("review", wait={"onReject": "continue"}),
            task("post", dependsOn=["review"], when="tasks.review.result.approved"),
            task("revise", dependsOn=["review"], when="!tasks.review.result.approved"),
        ),
    )
    hard = run(client, "publish", {"topic": "x"})
    soft = run(client, "soft")

    for sid in (hard, soft):
        step = wait_listed(client, sid)
        response = client.post(
            f"/v1/opscore/tasks/{step['taskId']}/reject", json={"comment": "not this time"}
        )
        assert response.status_code == 200, response.text

    failed = settle(client, hard)
    assert failed["status"] == "failed"
    assert by_step(failed)["review"]["error"] == "rejected by admin-1: not this time"
    assert by_step(failed)["post"]["status"] == "cancelled"
    letters = client.get("/v1/opscore/dead-letters").json()["items"]
    assert [d["stepId"] for d in letters] == ["review"]

    went_on = by_step(settle(client, soft))
    assert went_on["review"]["status"] == "completed"
    assert went_on["review"]["result"]["approved"] is False
    assert went_on["post"]["status"] == "skipped" and went_on["revise"]["status"] == "completed"


def test_a_wait_that_times_out_takes_its_default(ops) -> None:
    client, fleet, _ = ops
    fleet.add("worker", Behaviour())
    create(
        client,
        template(
            "lenient",
            approval("review", wait={"timeoutSeconds": 0.3, "onTimeout": "approve"}),
            task("post", dependsOn=["review"]),
        ),
    )
    create(client, template("strict", approval("review", wait={"timeoutSeconds": 0.3})))
    create(
        client,
        template("paid", signal_step("pay", "payment", wait={"timeoutSeconds": 0.3}), task("ship")),
    )

    lenient = settle(client, run(client, "lenient"))
    strict = settle(client, run(client, "strict"))
    paid = settle(client, run(client, "paid"))

    assert lenient["status"] == "completed"
    decision = by_step(lenient)["review"]["decision"]
    assert decision["outcome"] == "timed_out" and decision["approved"] is True
    assert decision["decidedBy"] == "opscore:timeout"
    assert strict["status"] == "failed"
    assert by_step(strict)["review"]["error"].startswith("no decision in time")
    assert paid["status"] == "failed" and by_step(paid)["pay"]["status"] == "failed"


def test_a_signal_completes_the_steps_waiting_for_it_with_its_payload(ops) -> None:
    client, fleet, _ = ops
    fleet.add("worker", Behaviour())
    create(
        client,
        template(
            "order",
            signal_step("paid", "payment-received", wait={"prompt": "wait for the PSP"}),
            task("ship", dependsOn=["paid"], parameters={"amount": "${tasks.paid.result.payload}"}),
        ),
    )
    sid = run(client, "order")
    step = wait_listed(client, sid)
    assert step["kind"] == "signal" and step["signal"] == "payment-received"
    assert waiting(client, kind="approval") == []
    assert len(waiting(client, sessionId=sid)) == 1

    wrong = client.post(f"/v1/opscore/sessions/{sid}/signals/refund", json={"payload": {}})
    assert wrong.status_code == 409 and wrong.json()["error"]["code"] == "SIGNAL_NOT_AWAITED"
    not_approval = client.post(f"/v1/opscore/tasks/{step['taskId']}/approve", json={})
    assert not_approval.status_code == 409
    assert "payment-received" in not_approval.json()["error"]["message"]

    sent = client.post(
        f"/v1/opscore/sessions/{sid}/signals/payment-received", json={"payload": {"eur": 42}}
    )
    assert sent.status_code == 200, sent.text
    assert [t["stepId"] for t in sent.json()] == ["paid"]
    detail = settle(client, sid)

    assert detail["status"] == "completed"
    assert by_step(detail)["ship"]["resolvedParameters"] == {"amount": {"eur": 42}}
    assert by_step(detail)["paid"]["decision"]["signal"] == "payment-received"
    late = client.post(f"/v1/opscore/sessions/{sid}/signals/payment-received", json={})
    assert late.status_code == 409


def test_cancelling_a_run_cancels_its_waiting_step(ops) -> None:
    client, _, _ = ops
    create(client, template("hold", approval("review")))
    sid = run(client, "hold")
    step = wait_listed(client, sid)

    assert client.post(f"/v1/opscore/sessions/{sid}/cancel").status_code == 200

    assert waiting(client) == []
    task_run = client.get(f"/v1/opscore/tasks/{step['taskId']}").json()
    assert task_run["status"] == "cancelled"
    late = client.post(f"/v1/opscore/tasks/{step['taskId']}/approve", json={})
    assert late.status_code == 409


def test_unknown_steps_and_bodies_are_clear_errors(client) -> None:
    missing = client.post("/v1/opscore/tasks/task-nope/approve", json={})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "TASK_NOT_FOUND"
    gone = client.post("/v1/opscore/sessions/nope/signals/x", json={})
    assert gone.status_code == 404
    extra = client.post("/v1/opscore/tasks/task-nope/approve", json={"coment": "typo"})
    assert extra.status_code == 422
    assert "unknown field 'coment'" in extra.json()["error"]["message"]


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"taskId": "a", "kind": "signal"}, "name its signal in wait.signal"),
        (
            {"taskId": "a", "kind": "approval", "agentCapability": "work"},
            "agentCapability, agentId and target do not apply",
        ),
        (
            {"taskId": "a", "kind": "approval", "wait": {"onTimeout": "complete"}},
            "approve or reject",
        ),
        ({"taskId": "a", "agentCapability": "w", "wait": {"prompt": "x"}}, "only approval"),
        ({"taskId": "a", "kind": "approval", "wait": {"signal": "s"}}, "applies to signal"),
    ],
)
def test_wait_policies_that_do_not_fit_their_step_are_refused(
    step: dict[str, Any], message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        build_definition(template("wf", step), max_tasks=10)
