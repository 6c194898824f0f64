"""A state report and the task change it makes, written together (``Storage.record_report``).

An agent's ``active`` report starts the attempt it holds, its ``idle`` report ends it. Written
one after the other, that is two writes per report, and on a shared store two round trips
(the second also writes the agent again, to free its slot). The workflow room says which task
a report is about and what it does to it (``ReportPlan``, pure functions of the two records);
each store applies the report and that change in one atomic step. Whatever the plan leaves
out (several tasks on one agent, a report that is deferred, lost tasks) the workflow room
handles afterwards, as before.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from ..models import Agent, StateRecord, TaskRun
from .rules import slot_released, task_change_applies


@dataclass(frozen=True)
class TaskUpdate:
    """A compare-and-set of one task, as ``Storage.update_task`` takes it."""

    changes: dict[str, Any]
    expect: Collection[str] | None = None
    attempt: int | None = None
    release_slot_of: str | None = None
    # what the change means to the caller ("running", "completed"); the store ignores it
    meaning: str = field(default="", compare=False)


class ReportPlan(Protocol):
    """What a state report does to the task its agent holds; pure, called inside the store's
    atomic step (possibly more than once, on a shared store that retries)."""

    def task_of(self, agent: Agent, record: StateRecord) -> str | None:
        """The task the report is about, given the agent with the report applied; None for
        none or for more than one (then nothing but the report is written)."""
        ...

    def named_task(self, record: StateRecord) -> str | None:
        """The task the report names, held by its agent or not. A shared store that decides
        on its last sight of the agent reads the agent afresh when that sight does not hold
        this task: another process may have handed it over since."""
        ...

    def plan(self, agent: Agent, record: StateRecord, task: TaskRun) -> TaskUpdate | None:
        """The change the report makes to ``task``, or None to leave it alone."""
        ...


class ReportWritten(NamedTuple):
    """What ``record_report`` wrote: the agent after the report (and after the slot the
    task's change freed), whether the report was a replay, and the task as changed with the
    change that was applied (both None when no task changed)."""

    agent: Agent
    duplicate: bool
    task: TaskRun | None = None
    update: TaskUpdate | None = None


def planned(
    plan: ReportPlan, agent: Agent, record: StateRecord, task: TaskRun | None
) -> tuple[TaskUpdate, TaskRun, Agent] | None:
    """(the change, the task changed, the agent after it) when the plan changes ``task``
    and the change's guards hold on it; None when the report changes no task."""
    if task is None:
        return None
    update = plan.plan(agent, record, task)
    if update is None or not task_change_applies(task, update.expect, update.attempt):
        return None
    changed = task.model_copy(update=update.changes)
    if update.release_slot_of == agent.agent_id:
        agent = slot_released(agent, task.task_id) or agent
    return update, changed, agent
