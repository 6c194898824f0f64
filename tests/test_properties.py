"""Property tests (hypothesis) for the workflow validator and the substitution syntax."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opscore.models import WorkflowDefinition
from opscore.workflow.substitution import TemplateError, substitute, task_references
from opscore.workflow.templates import validate_definition

ids = st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=6)
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ids, inner, max_size=4),
    max_leaves=20,
)


@st.composite
def dags(draw):
    """A random DAG: edges only from earlier to later tasks, so never a cycle."""
    n = draw(st.integers(1, 12))
    names = [f"t{i}" for i in range(n)]
    tasks = []
    for i, name in enumerate(names):
        deps = draw(st.lists(st.sampled_from(names[:i]), unique=True, max_size=3)) if i else []
        refs = {f"p{j}": f"${{tasks.{d}.result.x}}" for j, d in enumerate(deps)}
        tasks.append({"taskId": name, "dependsOn": deps, "parameters": {**refs, "i": "${input.n}"}})
    return tasks


@given(dags())
@settings(max_examples=150, deadline=None)
def test_every_dag_is_accepted(tasks) -> None:
    validate_definition(
        WorkflowDefinition.model_validate({"id": "w", "tasks": tasks}), max_tasks=50
    )


@given(dags(), st.data())
@settings(max_examples=150, deadline=None)
def test_a_back_edge_is_always_rejected_as_a_cycle_naming_tasks(tasks, data) -> None:
    if len(tasks) < 2:
        return
    late = data.draw(st.integers(1, len(tasks) - 1))
    early = data.draw(st.integers(0, late - 1))
    tasks[early]["dependsOn"] = [*tasks[early]["dependsOn"], tasks[late]["taskId"]]
    # make sure late really depends on early (directly), so the back edge closes a cycle
    tasks[late]["dependsOn"] = sorted({*tasks[late]["dependsOn"], tasks[early]["taskId"]})
    with pytest.raises(TemplateError) as caught:
        validate_definition(
            WorkflowDefinition.model_validate({"id": "w", "tasks": tasks}), max_tasks=50
        )
    assert tasks[early]["taskId"] in caught.value.message


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "taskId": ids,
                "nextTaskId": st.none() | ids,
                "dependsOn": st.lists(ids, max_size=3),
                "fallbackTaskId": st.none() | ids,
                "parameters": st.dictionaries(
                    ids,
                    st.sampled_from(["${tasks.a.result}", "${input.x}", "plain", "${bad"]),
                    max_size=2,
                ),
            }
        ),
        min_size=1,
        max_size=8,
    )
)
@settings(max_examples=300, deadline=None)
def test_arbitrary_graphs_are_accepted_or_rejected_cleanly(tasks) -> None:
    try:
        validate_definition(
            WorkflowDefinition.model_validate({"id": "w", "tasks": tasks}), max_tasks=50
        )
    except TemplateError as exc:
        assert exc.message


@given(json_value)
@settings(max_examples=200, deadline=None)
def test_values_without_references_pass_through_unchanged(value) -> None:
    if "${" in repr(value):
        return
    assert substitute(value, {"input": {}, "tasks": {}, "session": {}}) == value


@given(st.text(max_size=60), json_value)
@settings(max_examples=300, deadline=None)
def test_any_string_substitutes_or_fails_with_a_template_error(text, payload) -> None:
    context = {"input": {"x": payload}, "tasks": {"a": {"result": payload}}, "session": {"id": "s"}}
    try:
        task_references({"p": text})
        substitute({"p": text}, context)
    except TemplateError:
        pass


@given(json_value)
@settings(max_examples=200, deadline=None)
def test_a_whole_reference_keeps_the_value_and_its_type(payload) -> None:
    context = {"input": {"x": payload}, "tasks": {}, "session": {}}
    assert substitute("${input.x}", context) == payload
    assert substitute({"nested": ["${input.x}"]}, context) == {"nested": [payload]}


@pytest.mark.parametrize(
    "expr",
    [
        "${__import__('os').system('true')}",
        "${open('/etc/passwd')}",
        "${input.x + 1}",
        "${tasks.a.result; rm -rf}",
        "${env.HOME}",
        "${session.__dict__}",
    ],
)
def test_references_cannot_execute_or_reach_outside(expr: str) -> None:
    with pytest.raises(TemplateError):
        substitute(expr, {"input": {"x": 1}, "tasks": {}, "session": {"id": "s"}})


def test_dunder_names_are_plain_keys_never_attributes() -> None:
    context = {"input": {"x": 1}, "tasks": {}, "session": {"id": "s"}}
    assert substitute("${input.__class__}", context) is None
    assert substitute("${input.x.__class__.__mro__}", context) is None
    assert (
        substitute("${input.__class__}", {**context, "input": {"__class__": "just data"}})
        == "just data"
    )
