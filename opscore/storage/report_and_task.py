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
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from ..models import Agent, Session, StateRecord, TaskRun
from .rules import slot_released, task_change_applies


@dataclass(frozen=True)
class QueuedNext:
    """The run's next step, queued in the same atomic step as the change that completes the
    step before it (``TaskUpdate.then``): moved by ``changes`` if its status is still one of
    ``expect``, and queued (as ``enqueue``, at its priority) at ``ready_at``."""

    task_id: str
    changes: dict[str, Any]
    ready_at: datetime
    expect: Collection[str] = ("pending",)


@dataclass(frozen=True)
class RunEnd:
    """The run completed in the same atomic step as the completion of its last step
    (``TaskUpdate.ends_run``): moved by ``changes`` if its status is still one of ``expect``."""

    session_id: str
    changes: dict[str, Any]
    expect: Collection[str] = ("running",)


@dataclass(frozen=True)
class TaskUpdate:
    """A compare-and-set of one task, as ``Storage.update_task`` takes it."""

    changes: dict[str, Any]
    expect: Collection[str] | None = None
    attempt: int | None = None
    release_slot_of: str | None = None
    # what the change means to the caller ("running", "completed"); the store ignores it
    meaning: str = field(default="", compare=False)
    # record_report: the step this change lets start, queued with it when still pending
    then: QueuedNext | None = None
    # a completion of the run's last step: the run completed with it, not read back first
    # (nor read along with the completion, as Redis does for a run that advances)
    ends_run: RunEnd | None = None
    # a completion that reports usage: the step it lets start, queued only once that usage
    # is counted (a budget reads it before the step is handed over), so not with it; the
    # store ignores it
    then_after_usage: QueuedNext | None = field(default=None, compare=False)

    @property
    def planned_then(self) -> QueuedNext | None:
        """The step this change lets start, written with it (``then``) or after its usage
        is counted (``then_after_usage``)."""
        return self.then or self.then_after_usage


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

    def next_step_of(self, task_id: str) -> str | None:
        """The step a completion of ``task_id`` may queue with it (``TaskUpdate.then``), so
        that a store that names its records before deciding reads that one too; None for
        none."""
        ...

    def run_ended_by(self, task_id: str) -> str | None:
        """The run (its session id) a completion of ``task_id`` may complete with it
        (``TaskUpdate.ends_run``), read along as ``next_step_of``'s step; None for none."""
        ...


class ReportWritten(NamedTuple):
    """What ``record_report`` wrote: the agent after the report (and after the slot the
    task's change freed), whether the report was a replay, the task as changed with the
    change that was applied (both None when no task changed), the next step as queued
    with it (``TaskUpdate.then``; None when there was none or it was no longer pending),
    and the run as completed with it (``TaskUpdate.ends_run``; None when it was not)."""

    agent: Agent
    duplicate: bool
    task: TaskRun | None = None
    update: TaskUpdate | None = None
    queued: TaskRun | None = None
    ended: Session | None = None


class TaskWritten(NamedTuple):
    """What ``update_task_and_next`` wrote: the task as changed (None when the change did not
    apply), and with it the next step as queued and the run as completed, as in
    ``ReportWritten``."""

    task: TaskRun | None
    queued: TaskRun | None = None
    ended: Session | None = None


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


def next_queued(then: QueuedNext | None, current: TaskRun | None) -> TaskRun | None:
    """The next step as ``then`` queues it, when its guard holds on ``current`` (the step
    as the store holds it); None to leave it."""
    if then is None or current is None or current.status not in then.expect:
        return None
    return current.model_copy(update=then.changes)


def run_ended(end: RunEnd | None, current: Session | None) -> Session | None:
    """The run as ``end`` completes it, when its guard holds on ``current`` (the session as
    the store holds it); None to leave it (the caller completes it as before, if it must)."""
    if end is None or current is None or current.status not in end.expect:
        return None
    return current.model_copy(update=end.changes)
