"""Conditions on steps (``when``), skipped steps and what they do to the steps below, and
templates that refuse unknown keys by name."""

from __future__ import annotations

import pytest

from opscore.models import WorkflowDefinition
from opscore.workflow.conditions import ConditionError, compile_condition, evaluate, gate
from opscore.workflow.substitution import TemplateError
from opscore.workflow.templates import build_definition, parse_template_text

from .fakes import Behaviour
from .workflow_helpers import by_step, create, run, settle, task, template

# --- the expression language -----------------------------------------------------------------


def test_conditions_read_input_results_and_statuses() -> None:
    context = {
        "input": {"mode": "full", "n": 3},
        "tasks": {"check": {"status": "completed", "result": {"score": 0.9, "tags": ["a"]}}},
        "session": {"id": "s"},
    }
    assert evaluate('tasks.check.result.score > 0.8 && input.mode == "full"', context)
    assert evaluate('tasks.check.status == "completed"', context)
    assert evaluate('"a" in tasks.check.result.tags && input.n >= 3', context)
    assert evaluate("tasks.check.result.tags.exists(t, t == 'a')", context)
    assert not evaluate("input.n > 3", context)
    assert evaluate('tasks["check"].result.score == 0.9', context)


def test_a_condition_that_cannot_be_evaluated_is_an_error_not_false() -> None:
    with pytest.raises(ConditionError, match="could not be evaluated"):
        evaluate("input.missing > 1", {"input": {}, "tasks": {}})
    with pytest.raises(ConditionError, match="not true or false"):
        evaluate("input.n + 1", {"input": {"n": 1}, "tasks": {}})
    with pytest.raises(ConditionError):
        evaluate("input.text > 1", {"input": {"text": "x"}, "tasks": {}})


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("input.n >", "not valid CEL"),
        ("os.system('x') == 0", "unknown name"),
        ("payload.n > 1", "unknown name"),
        ("input.xs.map(x, input.xs.map(y, x + y)).size() > 0", "more than 1 comprehension"),
    ],
)
def test_invalid_conditions_are_refused_when_the_template_is_stored(
    expression: str, message: str
) -> None:
    with pytest.raises(TemplateError, match=message):
        compile_condition(expression)


def test_gate_skips_below_a_skipped_step_unless_the_step_decides_for_itself() -> None:
    context = {"input": {}, "tasks": {"a": {"status": "skipped", "result": None}}}
    assert gate(None, ["a"], {"a"}, context).action == "skip"
    assert gate(None, ["a"], set(), context).action == "start"
    joined = gate('tasks.a.status == "skipped"', ["a"], {"a"}, context)
    assert joined.action == "start"
    assert gate("input.nope == 1", ["a"], {"a"}, context).action == "fail"


# --- templates -----------------------------------------------------------------------------------


def _build(body: dict) -> WorkflowDefinition:
    return build_definition(body, max_tasks=100)


def test_an_unknown_key_is_refused_naming_the_key_and_the_task() -> None:
    body = template("wf", task("a", whenn="input.x == 1"))
    with pytest.raises(TemplateError) as caught:
        _build(body)
    assert "unknown field 'whenn' in task 'a'" in caught.value.message
    body = {**template("wf", task("a")), "schedules": []}
    with pytest.raises(TemplateError, match="unknown field 'schedules'"):
        _build(body)
    body = template("wf", task("a", retry={"maxAttempt": 3}))
    with pytest.raises(TemplateError, match="unknown field 'maxAttempt' in task 'a'"):
        _build(body)


def test_a_condition_may_only_read_steps_that_run_before_it() -> None:
    with pytest.raises(TemplateError, match="'b' in its condition, which does not run before"):
        _build(template("wf", task("a", when="tasks.b.status == 'completed'"), task("b")))
    with pytest.raises(TemplateError, match="unknown task 'zzz' in its condition"):
        _build(template("wf", task("a", when="tasks.zzz.status == 'completed'")))
    with pytest.raises(TemplateError, match="Fallback task 'fb' cannot have a condition"):
        _build(template("wf", task("a", fallbackTaskId="fb"), task("fb", when="true")))


def test_yaml_templates_carry_conditions() -> None:
    text = """
id: triage
tasks:
  - taskId: check
    agentCapability: work
  - taskId: deep
    agentCapability: work
    dependsOn: [check]
    when: tasks.check.result.score > 0.5
"""
    definition = _build(parse_template_text(text))
    assert definition.tasks[1].when == "tasks.check.result.score > 0.5"


# --- whole runs on every store ---------------------------------------------------------------

TRIAGE = template(
    "triage",
    task("check", parameters={"score": "${input.score}"}),
    task("deep", dependsOn=["check"], when="tasks.check.result.echo.score > 0.5"),
    task("deeper", dependsOn=["deep"]),
    task("quick", dependsOn=["check"], when="tasks.check.result.echo.score <= 0.5"),
    task(
        "join",
        dependsOn=["deeper", "quick"],
        when='tasks.deeper.status == "completed" || tasks.quick.status == "completed"',
    ),
    task("audit", dependsOn=["join"], when='tasks.check.status == "completed"'),
)


def test_conditions_on_a_steps_result_choose_the_branch_on_every_store(ops) -> None:
    client, fleet, _ = ops
    fleet.add("worker", Behaviour(max_concurrency=4))
    create(client, TRIAGE)

    high = by_step(settle(client, run(client, "triage", {"score": 0.9})))
    low_detail = settle(client, run(client, "triage", {"score": 0.1}))
    low = by_step(low_detail)

    assert low_detail["status"] == "completed"
    status = {step: t["status"] for step, t in high.items()}
    assert status == {
        "check": "completed",
        "deep": "completed",
        "deeper": "completed",
        "quick": "skipped",
        "join": "completed",
        "audit": "completed",
    }
    assert high["quick"]["skipReason"].startswith("condition is false")
    status = {step: t["status"] for step, t in low.items()}
    assert status["deep"] == "skipped" and status["quick"] == "completed"
    # a step without a condition below a skipped one is skipped too; the join decides itself
    assert status["deeper"] == "skipped" and status["join"] == "completed"
    assert low["deeper"]["skipReason"] == "prerequisite 'deep' was skipped"
    sent = sorted(m["task_name"] for m in fleet.received)
    assert sent.count("deep") == 1 and sent.count("quick") == 1 and sent.count("deeper") == 1


def test_a_condition_that_fails_to_evaluate_fails_the_run_with_the_reason(ops) -> None:
    client, fleet, _ = ops
    fleet.add("worker", Behaviour())
    create(client, template("broken", task("a"), task("b", dependsOn=["a"], when="input.x > 1")))

    detail = settle(client, run(client, "broken", {}))

    assert detail["status"] == "failed"
    assert by_step(detail)["b"]["status"] == "failed"
    assert "could not be evaluated" in by_step(detail)["b"]["error"]
    letters = client.get("/v1/opscore/dead-letters").json()["items"]
    assert [d["stepId"] for d in letters] == ["b"]


def test_every_step_skipped_still_completes_the_run(ops) -> None:
    client, fleet, _ = ops
    create(client, template("nothing", task("a", when="input.go"), task("b", dependsOn=["a"])))

    detail = settle(client, run(client, "nothing", {"go": False}))

    assert detail["status"] == "completed"
    assert {t["status"] for t in detail["tasks"]} == {"skipped"}
    assert fleet.received == []


def test_the_api_refuses_unknown_template_keys_with_a_422_naming_them(client) -> None:
    body = template("wf", task("a", agentCapabilty="work"))
    response = client.post("/v1/opscore/workflows", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert "unknown field 'agentCapabilty' in task 'a'" in error["message"]
    assert error["details"][0]["loc"] == ["tasks", 0, "agentCapabilty"]

    yaml_body = "id: wf\ntasks:\n  - taskId: a\n    dependson: [b]\n"
    response = client.post(
        "/v1/opscore/workflows", content=yaml_body, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 422
    assert "unknown field 'dependson'" in response.json()["error"]["message"]

    # the inline definition of the prototype's trigger body is checked the same way
    client.post("/v1/opscore/agents", json={"agentId": "pinned", "agentName": "pinned"})
    response = client.post(
        "/v1/opscore/agent/pinned/workflow",
        json={"workflowDefinition": template("wf", task("a", wen="true"))},
    )
    assert response.status_code == 422, response.text
    assert "unknown field 'wen'" in response.json()["error"]["message"]
