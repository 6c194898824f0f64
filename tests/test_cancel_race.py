"""A run's cancel that races the dispatcher: the task is read as queued, then handed over
before the cancel lands. The cancel still wins, and it must give back the slot the hand-over
took (and tell the agent), on every store."""

from __future__ import annotations

from typing import Any

import pytest

from opscore.lifecycle import AgentRegistry, AgentStates
from opscore.models import Agent, TaskRun, TaskStatus, WorkflowDefinition, utcnow
from opscore.storage import storage_from_url
from opscore.workflow import build_workflow

from .conftest import STORES, make_settings, store_url


@pytest.fixture(params=STORES)
async def store(request, tmp_path) -> Any:
    storage = storage_from_url(store_url(request, request.param, tmp_path))
    await storage.open()
    yield storage
    await storage.close()


async def workflow_with_agent(store: Any) -> tuple[Any, AgentStates]:
    """The workflow services on ``store``, the agents' states that report to them, and one
    push agent ``x`` with one slot."""
    settings = make_settings()
    registry = AgentRegistry(store)
    states = AgentStates(store, settings, registry)
    workflow = build_workflow(store, settings, registry, states)
    now = utcnow()
    await store.create_agent(
        Agent(agent_id="x", agent_name="x", last_seen=now, registered_at=now, updated_at=now)
    )
    return workflow, states


def race_in_cancel(workflow: Any, store: Any, between: Any) -> None:
    """Run ``between`` after the run's cancel read its tasks and before it writes: the read
    the cancel judges each task by (``session_tasks``, from ``cancel_open_tasks`` alone)."""
    cancel_open_tasks = workflow.engine.cancel_open_tasks
    read_tasks = store.session_tasks

    async def read_then_race(session_id: str) -> list[TaskRun]:
        tasks = await read_tasks(session_id)
        await between()
        return tasks

    async def cancel_with_race(session_id: str, reason: str) -> None:
        store.session_tasks = read_then_race
        try:
            await cancel_open_tasks(session_id, reason)
        finally:
            store.session_tasks = read_tasks

    workflow.engine.cancel_open_tasks = cancel_with_race


async def test_a_cancel_that_read_a_task_queued_frees_the_slot_of_its_fresh_hand_over(
    store: Any,
) -> None:
    workflow, _ = await workflow_with_agent(store)
    told: list[tuple[str, str]] = []
    workflow.engine.cancel_listeners.append(
        lambda task, reason: told.append((task.task_id, reason))
    )
    definition = WorkflowDefinition.model_validate(
        {"id": "w", "name": "w", "tasks": [{"taskId": "a", "name": "a"}]}
    )
    sid = (await workflow.runs.start_run(definition, payload={})).session_id
    [queued] = await store.session_tasks(sid)
    assert queued.status == TaskStatus.QUEUED

    async def hand_over() -> None:
        """The dispatcher's hand-over, between the cancel's read and its write."""
        agent = await store.get_agent("x")
        assert await workflow.handovers.mark_dispatched(queued, agent, utcnow()) is not None
        assert (await store.get_agent("x")).active_tasks == [queued.task_id]

    race_in_cancel(workflow, store, hand_over)
    await workflow.runs.cancel_session(sid)

    task = await store.get_task(queued.task_id)
    assert task.status == TaskStatus.CANCELLED and task.attempts == 1
    assert (await store.get_agent("x")).active_tasks == []  # the hand-over's slot is back
    assert told == [(queued.task_id, "session cancelled")]  # and its agent hears of it


async def test_a_cancel_leaves_a_task_that_ended_meanwhile_and_cancels_what_it_queued(
    store: Any,
) -> None:
    workflow, _ = await workflow_with_agent(store)
    definition = WorkflowDefinition.model_validate(
        {
            "id": "w",
            "name": "w",
            "tasks": [{"taskId": "a", "name": "a"}, {"taskId": "b", "name": "b"}],
        }
    )
    sid = (await workflow.runs.start_run(definition, payload={})).session_id
    tasks = await store.session_tasks(sid)
    first = next(t for t in tasks if t.step_id == "a")
    agent = await store.get_agent("x")
    dispatched = await workflow.handovers.mark_dispatched(first, agent, utcnow())
    assert dispatched is not None

    async def complete() -> None:
        """The task's own completion, between the cancel's read and its write."""
        assert await workflow.outcomes.complete_task(dispatched, {"ok": True})

    race_in_cancel(workflow, store, complete)
    await workflow.runs.cancel_session(sid)

    done = await store.get_task(first.task_id)
    assert done.status == TaskStatus.COMPLETED and done.result == {"ok": True}
    assert (await store.get_agent("x")).active_tasks == []
    # the next step, pending when read and perhaps queued by the completion since: cancelled
    second = next(t for t in tasks if t.step_id == "b")
    assert (await store.get_task(second.task_id)).status == TaskStatus.CANCELLED
