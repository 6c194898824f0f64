"""The rules every backend applies inside its own atomic section: a state report
(``record_state``) and an agent's task slots (``claim_agent_slot``, ``release_agent_slot``)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from ..errors import ConflictError, NoFreeSlotError, NotFoundError
from ..models import Agent, StateRecord, TaskRun


def same_state(current: Agent, record: StateRecord) -> bool:
    """True when a report repeats the agent's current state exactly (a replay)."""
    return (
        current.state_timestamp == record.timestamp
        and current.state == record.state
        and current.state_details == record.details
    )


def apply_state(agent: Agent | None, record: StateRecord) -> tuple[Agent, bool]:
    """The agent after ``record``, and whether the record was a replay (agent unchanged).

    Raises NotFoundError for an unknown agent and ConflictError(STATE_OUT_OF_ORDER) for a
    report older than the current state.
    """
    if agent is None:
        raise NotFoundError(f"Agent '{record.agent_id}' is not registered", code="AGENT_NOT_FOUND")
    if same_state(agent, record):
        return agent, True
    if agent.state_timestamp is not None and record.timestamp < agent.state_timestamp:
        raise ConflictError(
            f"State report timestamp {record.timestamp.isoformat()} is older than the "
            f"current state's {agent.state_timestamp.isoformat()}",
            code="STATE_OUT_OF_ORDER",
        )
    update = {
        "state": record.state,
        "state_timestamp": record.timestamp,
        "state_details": record.details,
        "last_seen": record.received_at,
        "updated_at": record.received_at,
    }
    if not agent.names_tasks and names_task(record):
        update["names_tasks"] = True
    return agent.model_copy(update=update), False


def names_task(record: StateRecord) -> bool:
    """Whether an agent's own report names the task it is about (``opscore_task_id``)."""
    return record.reason is None and isinstance(record.details.get("opscore_task_id"), str)


def task_change_applies(task: TaskRun, expect: Collection[str] | None, attempt: int | None) -> bool:
    """Whether a task's compare-and-set applies (``Storage.update_task``): its status is in
    ``expect`` (any if None) and, when ``attempt`` is given, its attempt counter equals it."""
    if expect is not None and task.status not in expect:
        return False
    return attempt is None or task.attempts == attempt


def slot_claimed(agent: Agent, task_id: str) -> tuple[Agent | None, bool]:
    """(the agent holding ``task_id`` in a slot, or None when nothing changes; whether it
    holds it): a full agent takes nothing, a task it already holds keeps its slot."""
    if len(agent.active_tasks) >= agent.max_concurrency:
        return None, False
    if task_id in agent.active_tasks:
        return None, True
    return agent.model_copy(update={"active_tasks": [*agent.active_tasks, task_id]}), True


def slot_taken(agent: Agent | None, task_id: str) -> Agent | None:
    """The agent holding ``task_id`` in a slot, or None when it already did; NoFreeSlotError
    when it is full or gone (``update_task(claim_slot_of=...)``)."""
    if agent is None:
        raise NoFreeSlotError(f"No agent to take task '{task_id}'")
    if task_id in agent.active_tasks:  # a full agent keeps the task it holds
        return None
    changed, held = slot_claimed(agent, task_id)
    if not held:
        raise NoFreeSlotError(f"Agent '{agent.agent_id}' has no free slot")
    return changed


def slot_released(agent: Agent, task_id: str) -> Agent | None:
    """The agent without ``task_id`` among its active tasks, or None when it had none."""
    if task_id not in agent.active_tasks:
        return None
    return agent.model_copy(
        update={"active_tasks": [t for t in agent.active_tasks if t != task_id]}
    )


def ready_time(task: TaskRun) -> datetime:
    """When a task queued along with its run (``Storage.save_run(queued=...)``) is ready:
    its ``ready_at``, as the engine set it when it moved the task to queued."""
    return task.ready_at or task.queued_at or task.created_at
