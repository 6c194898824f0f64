"""The run's next step, queued in the write that completes the step before it.

After a task completed, the engine read its run back and queued the steps the completion let
start, one write each (``WorkflowEngine.advance``): two store calls more per step, on the path
of every run, and two round trips on a shared store. But a run's steps, and what each depends
on, never change once it started. So a process that has seen the run knows, before the
completion is written, which step it lets start. When that is one plain step (an agent step
that depends on the completed step alone, with no condition and no fallback in the run, whose
parameters reference no other step), the completion queues it in its own write, exactly as
``WorkflowEngine.enqueue_task`` would (``TaskUpdate.then``), and the run is not read back.
Likewise the completion of a run's one last step, in a run with no condition and no
fallback, completes the run in its own write (``RunShapes.ended_by``, ``TaskUpdate.ends_run``)
or, when the store's sight of the run was stale, right after it, without reading it back.
Everything else (fan-out, joins, conditions, fallbacks, a step that was no longer pending)
advances as before.

A run this process has not seen (another replica started it) would be read back at its first
completion here, and its next step queued apart: two statements more per run on a shared
store, where that is the common case. So a run's tasks carry what their completion alone does
(``carried_shapes``: ``TaskRun.next_step``, ``ends_run``), where the next step reads nothing
of the run but the completed step's result and its parameters are small; and the process that
hands a task over remembers that by the task's id (``RunShapes.handed_over``), so that the
store reads the next step's row along with the report, before it has read the task.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from datetime import datetime

import orjson

from ..models import NextStep, Session, TaskRun, TaskStatus
from ..models.runs import CARRIED_PARAMETERS_BYTES
from ..storage.report_and_task import QueuedNext
from .step_inputs import queued_fields, substitution_context
from .substitution import (
    SubstitutionTooLargeError,
    TemplateError,
    reference_roots,
    substitute,
    task_references,
)
from .transitions import task_move

S = TaskStatus


class _Run:
    """What never changes in one run: per task, the plain step its completion lets start,
    and what those steps' references read of the session (its input only if they use it).
    ``size``: about how many bytes of JSON that holds (parameters, input). A run with no
    such step, or too large to keep (``max_size``), holds nothing: it is only remembered,
    so that its shape is not worked out again at each of its completions."""

    __slots__ = ("last", "next_of", "session", "size", "task_ids")

    def __init__(self, session: Session, tasks: list[TaskRun], max_size: int) -> None:
        self.next_of = _plain_next_steps(tasks)
        self.last = _last_step(tasks)
        self.session: Session | None = None
        self.size = 0
        self.task_ids = [t.task_id for t in tasks] if self.next_of or self.last else []
        if not self.next_of:
            return
        steps = self.next_of.values()
        size = sum(_json_size(step.parameters) for step in steps)
        if any("input" in reference_roots(step.parameters) for step in steps):
            size += _json_size(session.initial_payload)
        else:  # nothing here reads it: keep none of a large input
            session = session.model_copy(update={"initial_payload": {}, "metadata": {}})
        if size > max_size:
            self.next_of = {}
            return
        self.session, self.size = session, size


class RunShapes:
    """The runs this process has seen lately (started here, or read to advance), kept for
    what never changes in them. Bounded in runs and in bytes of what they hold: the least
    recently seen run goes first, and a run that would hold more than a 64th of the room
    holds nothing (its completions advance it as before)."""

    def __init__(
        self, max_runs: int = 2048, max_bytes: int = 16 * 2**20, max_handed: int = 16384
    ) -> None:
        self.max_runs = max_runs
        self.max_bytes = max_bytes
        self.max_handed = max_handed
        self._bytes = 0
        self._runs: OrderedDict[str, _Run] = OrderedDict()
        self._session_of: dict[str, str] = {}  # task id -> its run's session id
        # task id -> (the next step's id, the run it ends) as carried by a task handed here
        self._handed: OrderedDict[str, tuple[str | None, str | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._runs)

    def seen(self, session: Session, tasks: list[TaskRun]) -> None:
        """Remember a run (its shape is taken once: it never changes)."""
        session_id = session.session_id
        if session_id in self._runs:
            self._runs.move_to_end(session_id)
            return
        run = _Run(session, tasks, self.max_bytes // 64)
        self._runs[session_id] = run
        self._bytes += run.size
        for task_id in run.task_ids:
            self._session_of[task_id] = session_id
        while len(self._runs) > self.max_runs or self._bytes > self.max_bytes:
            self.forget(next(iter(self._runs)))

    def forget(self, session_id: str) -> None:
        """Drop a run (it ended)."""
        run = self._runs.pop(session_id, None)
        if run is None:
            return
        self._bytes -= run.size
        for task_id in run.task_ids:
            self._session_of.pop(task_id, None)

    def handed_over(self, task: TaskRun) -> None:
        """Remember what ``task``, just handed over here, carries: its agent's reports most
        likely come here (dispatch/affinity.py), and the store names the rows a report may
        write before it reads the task (``next_step_of``, ``ended_by``). Bounded: the least
        recently handed over goes first, and a completion forgets its task (``done``)."""
        if task.next_step is None and not task.ends_run:
            return
        next_id = task.next_step.task_id if task.next_step is not None else None
        self._handed[task.task_id] = (next_id, task.session_id if task.ends_run else None)
        self._handed.move_to_end(task.task_id)
        while len(self._handed) > self.max_handed:
            self._handed.popitem(last=False)

    def done(self, task_id: str) -> None:
        """The task completed: nothing of it is needed any more."""
        self._handed.pop(task_id, None)

    def ended_by(self, task_id: str) -> str | None:
        """The run (its session id) that the completion of ``task_id`` alone completes
        (``_last_step``), by what this process knows of the run or of the task; None for
        none."""
        found = self._run_of(task_id)
        if found is not None:
            return found[0] if found[1].last == task_id else None
        handed = self._handed.get(task_id)
        return handed[1] if handed is not None else None

    def ends(self, task: TaskRun) -> str | None:
        """The run ``task``'s completion alone completes: by what the task carries, else by
        what this process knows of its run; None for none."""
        return task.session_id if task.ends_run else self.ended_by(task.task_id)

    def next_step_of(self, task_id: str) -> str | None:
        """The id of the plain step a completion of ``task_id`` lets start, if this process
        knows its run, or the task, and there is exactly one such step; else None."""
        found = self._next(task_id)
        if found is not None:
            return found[1].task_id
        handed = self._handed.get(task_id)
        return handed[0] if handed is not None else None

    def then(
        self, done: TaskRun, result: object, now: datetime, *, parameter_limit: int
    ) -> QueuedNext | None:
        """The next step queued with ``done``'s completion (``result``), as
        ``enqueue_task`` would queue it; None when there is none to queue so, or its
        parameters do not resolve (``advance`` refuses it, as any step)."""
        found = self._next(done.task_id)
        step: TaskRun | NextStep
        if found is not None:
            session, step = found
            completed = done.model_copy(update={"status": S.COMPLETED, "result": result})
            context = substitution_context(session, [completed])  # the only step it references
        elif done.next_step is not None:  # it reads nothing of the run but this result
            step = done.next_step
            context = {"tasks": {done.step_id: {"status": S.COMPLETED.value, "result": result}}}
        else:
            return None
        try:
            resolved = substitute(step.parameters, context, limit=parameter_limit)
        except (SubstitutionTooLargeError, TemplateError):
            return None
        fields = queued_fields(step, resolved, now)
        move = task_move(S.QUEUED, only_from=frozenset({S.PENDING}), **fields)
        return QueuedNext(step.task_id, move.changes, fields["ready_at"], move.expect or ())

    def _run_of(self, task_id: str) -> tuple[str, _Run] | None:
        """The session id and the run ``task_id`` belongs to, when this process knows it."""
        session_id = self._session_of.get(task_id)
        run = self._runs.get(session_id) if session_id is not None else None
        return (session_id, run) if session_id is not None and run is not None else None

    def _next(self, task_id: str) -> tuple[Session, TaskRun] | None:
        found = self._run_of(task_id)
        if found is None:
            return None
        run = found[1]
        step = run.next_of.get(task_id)
        return (run.session, step) if step is not None and run.session is not None else None


def carried_shapes(tasks: list[TaskRun]) -> list[TaskRun]:
    """A new run's tasks, each with what its completion alone does to the run: the plain
    step it lets start (``TaskRun.next_step``), where that step reads nothing of the run but
    the completed step's result and its parameters are small, and whether it completes the
    run (``ends_run``). Any replica then writes these with the completion (module docs)."""
    next_of, last = _plain_next_steps(tasks), _last_step(tasks)
    out: list[TaskRun] = []
    for task in tasks:
        step = next_of.get(task.task_id)
        carried = None
        if step is not None and _carriable(step.parameters):
            carried = NextStep(
                task_id=step.task_id,
                parameters=step.parameters,
                delay_seconds=step.delay_seconds,
            )
        if carried is None and task.task_id != last:
            out.append(task)
            continue
        changes = {"next_step": carried, "ends_run": task.task_id == last}
        out.append(task.model_copy(update=changes))
    return out


def _carriable(parameters: dict[str, object]) -> bool:
    """Whether a step's parameters may ride on the step before it: they reference nothing
    but tasks' results (``_plain_after`` checked that this means the one before), and are
    small."""
    try:
        roots = reference_roots(parameters)
    except TemplateError:
        return False
    return roots <= {"tasks"} and _json_size(parameters) <= CARRIED_PARAMETERS_BYTES


def _json_size(value: object) -> int:
    """About how many bytes ``value`` takes as JSON; what orjson cannot write (an integer
    past 64 bits) counts as too large to keep."""
    try:
        return len(orjson.dumps(value))
    except (TypeError, orjson.JSONEncodeError):
        return 2**62


def _plain_next_steps(tasks: list[TaskRun]) -> dict[str, TaskRun]:
    """Per task id, the one step its completion alone lets start, where that step is plain."""
    if any(t.fallback_for or t.fallback_task_id for t in tasks):
        return {}  # a completed fallback stands in for another step: advance decides
    dependents: defaultdict[str, list[TaskRun]] = defaultdict(list)
    for task in tasks:
        for step_id in task.depends_on:
            dependents[step_id].append(task)
    out: dict[str, TaskRun] = {}
    for task in tasks:
        after = dependents.get(task.step_id, [])
        if task.kind == "agent" and len(after) == 1 and _plain_after(after[0], task.step_id):
            out[task.task_id] = after[0]
    return out


def _last_step(tasks: list[TaskRun]) -> str | None:
    """The task whose completion completes the run: its one agent step that no other step
    depends on, in a run with no condition and no fallback. Every other step is then one it
    waits for, directly or not, and none can be skipped or stand in for another: all of
    them completed before it started, so its completion needs nothing of the run read back
    to know that the run is done."""
    if any(t.fallback_for or t.fallback_task_id or t.when is not None for t in tasks):
        return None
    awaited = {step_id for t in tasks for step_id in t.depends_on}
    ends = [t for t in tasks if t.step_id not in awaited]
    return ends[0].task_id if len(ends) == 1 and ends[0].kind == "agent" else None


def _plain_after(step: TaskRun, step_id: str) -> bool:
    """Whether ``step`` may start on the completion of ``step_id`` alone, with nothing
    else of the run to read: an agent step with no condition, that depends on that step
    only and references no other step's result."""
    if step.kind != "agent" or step.when is not None or step.depends_on != [step_id]:
        return False
    try:
        return task_references(step.parameters) <= {step_id}
    except TemplateError:
        return False
