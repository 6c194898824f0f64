"""``ApiModel.model_copy`` builds plain copies itself: they must be pydantic's own, field for
field, and every other case must still be pydantic's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, PrivateAttr

from opscore.models.agents import Agent
from opscore.models.common import ApiModel
from opscore.models.runs import Session, TaskAttempt, TaskRun, WorkflowTemplate

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def _task(**extra: Any) -> TaskRun:
    return TaskRun(
        task_id="t-1",
        session_id="s-1",
        step_id="first",
        timeout_seconds=30,
        max_attempts=3,
        backoff_seconds=1,
        max_backoff_seconds=60,
        created_at=NOW,
        parameters={"text": "hello", "nested": {"n": 1}},
        **extra,
    )


def _records() -> list[ApiModel]:
    return [
        _task(),
        _task(agent_id="agent-1", attempts=1, history=[TaskAttempt(attempt=1, started_at=NOW)]),
        Agent.model_validate(
            {
                "agentId": "agent-1",
                "agentName": "one",
                "endpointUrl": "http://127.0.0.1:9/x",
                "lastSeen": NOW,
                "registeredAt": NOW,
                "updatedAt": NOW,
            }
        ),
        Session.model_validate(
            {"sessionId": "s-1", "workflowId": "wf", "createdAt": NOW, "updatedAt": NOW}
        ),
    ]


def _pydantics(record: BaseModel, update: dict[str, Any] | None) -> BaseModel:
    return BaseModel.model_copy(record, update=update)


def _same(ours: BaseModel, theirs: BaseModel) -> None:
    assert type(ours) is type(theirs)
    assert ours.__dict__ == theirs.__dict__
    assert list(ours.__dict__) == list(theirs.__dict__)  # same order: same JSON
    assert ours.model_fields_set == theirs.model_fields_set
    assert ours.__pydantic_extra__ == theirs.__pydantic_extra__
    assert ours.__pydantic_private__ == theirs.__pydantic_private__
    assert ours.model_dump_json() == theirs.model_dump_json()


@pytest.mark.parametrize("record", _records(), ids=lambda r: type(r).__name__)
@pytest.mark.parametrize(
    "update",
    [None, {}, {"updated_at": NOW}, {"metadata": {"k": "v"}, "error": "x"}, {"unknown": 1}],
    ids=["none", "empty", "one", "two", "unknown-key"],
)
def test_a_plain_copy_is_pydantics_copy(record: ApiModel, update: dict[str, Any] | None) -> None:
    if update and "updated_at" in update and "updated_at" not in type(record).model_fields:
        update = {"created_at": NOW}
    _same(record.model_copy(update=update), _pydantics(record, update))


def test_a_copy_is_a_new_record_sharing_nested_values_as_pydantics_does() -> None:
    task = _task()
    copied = task.model_copy(update={"agent_id": "agent-2"})
    assert copied is not task and copied.__dict__ is not task.__dict__
    assert task.agent_id is None and copied.agent_id == "agent-2"
    assert copied.model_fields_set is not task.model_fields_set
    assert "agent_id" not in task.model_fields_set
    # shallow, as pydantic's: nested values are shared, not copied
    assert copied.parameters is task.parameters
    copied.error = "changed"
    assert task.error is None


def test_deep_copies_extra_fields_and_private_attributes_go_to_pydantic() -> None:
    task = _task()
    deep = task.model_copy(update={"agent_id": "a"}, deep=True)
    _same(deep, BaseModel.model_copy(task, update={"agent_id": "a"}, deep=True))
    assert deep.parameters == task.parameters and deep.parameters is not task.parameters

    class Open(ApiModel):
        model_config = ConfigDict(extra="allow")
        name: str

    opened = Open.model_validate({"name": "n", "other": 1})
    copied = opened.model_copy(update={"more": 2, "name": "m"})
    _same(copied, BaseModel.model_copy(opened, update={"more": 2, "name": "m"}))
    assert copied.__pydantic_extra__ == {"other": 1, "more": 2}

    class Private(ApiModel):
        name: str
        _cache: int | None = PrivateAttr(None)

    private = Private(name="n")
    private._cache = 3
    copied_private = private.model_copy(update={"name": "m"})
    assert copied_private._cache == 3 and copied_private.name == "m"
    _same(copied_private, BaseModel.model_copy(private, update={"name": "m"}))


def test_a_stored_templates_worked_out_parts_are_still_dropped() -> None:
    template = WorkflowTemplate(id="wf", version="1", tasks=[{"taskId": "a"}], created_at=NOW)
    template.definition()
    assert template._definition is not None
    copied = template.model_copy(update={"name": "other"})
    assert copied._definition is None and copied.name == "other"
