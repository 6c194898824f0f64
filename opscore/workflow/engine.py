"""The engine: moves a run forward. Queues the tasks whose prerequisites are met, and ends runs.

Everything else in this package (starting runs, outcomes of attempts, agents' reports, dead
letters, recovery) calls into it. Every task status change goes through
``transitions.move_task`` (a compare-and-set), so a state report, an explicit result, a timeout
and the dispatcher racing on one task never both win.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from ..config import Settings
from ..dispatch.limits import CapabilityLimits
from ..dispatch.wakeup import Wakeup
from ..errors import NotFoundError
from ..models import DeadLetter, Session, SessionStatus, TaskAttempt, TaskRun, TaskStatus, utcnow
from ..observe.logs import log_operation
from ..observe.metrics import Telemetry
from ..storage.base import Storage
from .conditions import gate
from .next_steps import RunShapes
from .step_inputs import queued_fields, substitution_context
from .steps import WaitListener, skip_step, start_wait
from .substitution import SubstitutionTooLargeError, substitute
from .transitions import INFLIGHT_TASK, TERMINAL_TASK, move_session, move_task, run_completion

logger = logging.getLogger("opscore.workflow")

S = TaskStatus
SESSION_FAILED = "session failed"
# reads of a task that keeps moving under its run's cancel before the cancel gives up on it
# and logs so (each miss means another actor moved it in between: a few are already unlikely)
CANCEL_TRIES = 5


class WorkflowEngine:
    """Advances runs: queues ready tasks, completes, fails and cancels sessions."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.clock = clock
        # Set whenever the dispatcher may have something new to do; it waits on this.
        self.wakeup = Wakeup()
        self.telemetry: Telemetry | None = None
        self.wait_listeners: list[WaitListener] = []
        # adds a result's usage up and keeps budgets (usage.UsageLedger, when wired)
        self.record_usage: Callable[[TaskRun, dict[str, Any] | None], Awaitable[None]] = _no_usage
        # told of a task cancelled while an agent had it
        self.cancel_listeners: list[Callable[[TaskRun, str], None]] = []
        # told when a run ends (a limited workflow's next run is admitted)
        self.run_end_listeners: list[Callable[[Session], Awaitable[None]]] = []
        # capability limits: the dispatcher takes a slot, the end of the attempt gives it back
        self.limits = CapabilityLimits(storage)
        # events out (run.completed, task.dead_lettered...): the event bus, when wired
        self.publish: Publish = _no_events
        # the runs this process has seen, for the step a completion queues with it
        self.shapes = RunShapes()

    def notify_dispatcher(self, *, capacity: bool = True, queued: bool = False) -> None:
        """Wake the dispatcher: an agent slot freed (or any change to who can take work), or,
        with ``capacity=False``, only a task queued (``queued``: by this process)."""
        self.wakeup.set(capacity=capacity, queued=queued)

    def observe(self, event: str, task: TaskRun, **extra: Any) -> None:
        """Tell telemetry (metrics and spans) what happened to a task."""
        if self.telemetry is not None:
            self.telemetry.on_task_event(event, task, extra)

    async def run_ended(self, session: Session, status: str) -> None:
        """Count the run's end, close its span and tell subscribers (run.<status>)."""
        self.shapes.forget(session.session_id)
        if self.telemetry is not None:
            self.telemetry.end_run(session, status)
        await self.publish(f"run.{status}", run_event(session))
        for listener in self.run_end_listeners:
            await listener(session)

    async def get_session(self, session_id: str) -> Session:
        """The session, or NotFoundError (SESSION_NOT_FOUND)."""
        session = await self.storage.get_session(session_id)
        if session is None:
            raise NotFoundError(f"Session '{session_id}' not found", code="SESSION_NOT_FOUND")
        return session

    async def get_task(self, task_id: str) -> TaskRun:
        """The task run, or NotFoundError (TASK_NOT_FOUND)."""
        task = await self.storage.get_task(task_id)
        if task is None:
            raise NotFoundError(f"Task '{task_id}' not found", code="TASK_NOT_FOUND")
        return task

    async def advance(
        self, session_id: str, *, known: tuple[Session, list[TaskRun]] | None = None
    ) -> None:
        """Queue every pending task whose prerequisites are met; complete the run when done.

        ``known``: the run and its tasks as this process has just written them, when nobody
        else can have changed them yet (a run just created: its id is not out): then they are
        not read back (one store call less per run)."""
        session: Session | None
        if known is not None:
            session, tasks = known[0], list(known[1])
        else:
            session, tasks = await self.storage.session_with_tasks(session_id)
        if session is None or session.status != SessionStatus.RUNNING:
            return
        self.shapes.seen(session, tasks)
        fallbacks = {t.step_id for t in tasks if t.fallback_for}
        started: set[str] = set()
        skipped_some = True
        while skipped_some:  # a skipped step may settle the steps below it: look again
            skipped_some = False
            satisfied = satisfied_steps(tasks)
            skipped = {t.step_id for t in tasks if t.status == S.SKIPPED}
            context = substitution_context(session, tasks)
            for i, task in enumerate(tasks):
                if (
                    task.status != S.PENDING
                    or task.step_id in fallbacks
                    or task.task_id in started
                    or not all(d in satisfied for d in task.depends_on)
                ):
                    continue
                verdict = gate(task.when, task.depends_on, skipped, context)
                if verdict.action == "fail":
                    await self._refuse(task, verdict.reason)
                    return
                if verdict.action == "skip":
                    moved = await skip_step(self, task, verdict.reason)
                    if moved is not None:
                        tasks[i] = moved
                        skipped_some = True
                    continue
                started.add(task.task_id)
                await self.enqueue_task(task, context)
        if all(t.step_id in satisfied for t in tasks if t.step_id not in fallbacks):
            await self._finish_session(session.session_id, tasks)

    async def enqueue_task(
        self,
        task: TaskRun,
        context: dict[str, Any],
        *,
        from_status: frozenset[S] | None = None,
        **changes: Any,
    ) -> None:
        """Resolve the task's parameters and put it in the queue (after its delay)."""
        now = self.clock()
        try:
            resolved = substitute(
                task.parameters, context, limit=self.settings.max_task_parameters_bytes
            )
        except SubstitutionTooLargeError as exc:
            await self._refuse(task, exc.message)
            return
        if task.kind != "agent":  # an approval or signal step waits instead of queueing
            await start_wait(self, task, resolved, from_status or frozenset({S.PENDING}), **changes)
            return
        fields = queued_fields(task, resolved, now)
        queued = await move_task(
            self.storage,
            task.task_id,
            S.QUEUED,
            only_from=from_status or frozenset({S.PENDING}),
            enqueue_at=fields["ready_at"],
            **fields,
            **changes,
        )
        if queued is not None:
            self.observe("queued", queued)
            self.notify_dispatcher(capacity=False, queued=True)

    async def _refuse(self, task: TaskRun, error: str) -> None:
        """A task whose parameters, with earlier results substituted, are too large, or whose
        condition cannot be evaluated: it fails without being sent (retrying cannot change
        that), and so does its run."""
        failed = await move_task(
            self.storage,
            task.task_id,
            S.FAILED,
            only_from=frozenset({S.PENDING}),
            error=error,
            finished_at=self.clock(),
        )
        if failed is None:
            return
        self.observe("failed", failed)
        await self.dead_letter(failed)

    async def dead_letter(self, task: TaskRun) -> None:
        """A task failed for good, with no fallback: list it for operators, fail its run."""
        await self.storage.add_dead_letter(
            DeadLetter(
                task_id=task.task_id,
                session_id=task.session_id,
                step_id=task.step_id,
                error=task.error,
                attempts=task.attempts,
                dead_lettered_at=self.clock(),
            )
        )
        log_operation(
            "task.dead_lettered",
            {"sessionId": task.session_id, "taskId": task.task_id, "error": task.error},
            level=logging.ERROR,
        )
        await self.publish(
            "task.dead_lettered",
            {
                "taskId": task.task_id,
                "sessionId": task.session_id,
                "stepId": task.step_id,
                "error": task.error,
                "attempts": task.attempts,
            },
        )
        await self.fail_session(task.session_id, f"Task '{task.step_id}' failed: {task.error}")

    async def complete_run(self, session_id: str) -> None:
        """Complete a run whose last step just completed (``RunShapes.ended_by``), without
        reading it back: nothing of it is left to start or to cancel. The session's own
        compare-and-set still decides (a run cancelled meanwhile stays cancelled)."""
        await self._finish_session(session_id, [])

    async def run_completed(self, done: Session) -> None:
        """What follows a run's completion, however it was written (on its own, or with
        its last step's: ``TaskUpdate.ends_run``)."""
        await self.run_ended(done, "completed")
        log_operation(
            "workflow.completed", {"sessionId": done.session_id, "workflowId": done.workflow_id}
        )

    async def _finish_session(self, session_id: str, tasks: list[TaskRun]) -> None:
        # Fallbacks that were not needed are cancelled before the session completes, so a
        # reader never sees a completed session with a task still pending.
        for task in tasks:
            if task.status == S.PENDING:
                await move_task(
                    self.storage,
                    task.task_id,
                    S.CANCELLED,
                    only_from=frozenset({S.PENDING}),
                    cancel_reason="not needed",
                )
        end = run_completion(session_id, self.clock())
        done = await self.storage.update_session(session_id, end.changes, expect=end.expect)
        if done is not None:
            await self.run_completed(done)

    async def fail_session(self, session_id: str, error: str) -> None:
        """A task failed for good: cancel the rest of the run, then mark the run failed."""
        # the rest of the run is cancelled first, so a reader never sees a failed session
        # with tasks still open (a session that was already over has none left to cancel)
        await self.cancel_open_tasks(session_id, SESSION_FAILED)
        now = self.clock()
        failed = await move_session(
            self.storage,
            session_id,
            SessionStatus.FAILED,
            error=error,
            finished_at=now,
            updated_at=now,
        )
        if failed is None:
            return
        await self.run_ended(failed, "failed")
        log_operation("workflow.failed", {"sessionId": session_id, "error": error}, level=40)

    async def cancel_open_tasks(self, session_id: str, reason: str) -> None:
        """Cancel every task of the run that has not ended, freeing agents' slots."""
        for task in await self.storage.session_tasks(session_id):
            await self._cancel_task(task, reason)

    async def _cancel_task(self, task: TaskRun | None, reason: str) -> None:
        """Cancel ``task`` from the status and attempt it was read in, so that the slot the
        cancel gives back is the one the task holds when the cancel lands. A task that
        moved in between (the dispatcher handed it over, its agent reported) is read again
        and cancelled as it is now: a cancel judged on the old read would win over a fresh
        hand-over without freeing its agent's slot, which stayed taken until recovery."""
        for _ in range(CANCEL_TRIES):
            if task is None or task.status in TERMINAL_TASK:
                return
            # an agent's task, also one waiting for input (A2A): its agent slot goes back
            held = task.status in INFLIGHT_TASK or (task.status == S.WAITING and task.agent_id)
            cancelled = await move_task(
                self.storage,
                task.task_id,
                S.CANCELLED,
                only_from=frozenset({task.status}),
                attempt=task.attempts,
                release_slot_of=task.agent_id if held else None,
                cancel_reason=reason,
                deadline=None,
            )
            if cancelled is not None:
                self.observe("cancelled", cancelled)
                if held:
                    await self.release(task, slot_freed=True)
                    for listener in self.cancel_listeners:  # the agent hears (cancels.py)
                        listener(cancelled, reason)
                return
            task = await self.storage.get_task(task.task_id)
        logger.warning(
            "a task kept changing under its run's cancel and was left open",
            extra={"taskId": task.task_id if task else None, "tries": CANCEL_TRIES},
        )

    async def release(
        self, task: TaskRun, *, slot_freed: bool = False, notify: bool = True
    ) -> None:
        """Free the agent slot (and capability slot) the task held; wake the dispatcher
        (unless ``notify`` is False: the caller does, once it queued what follows).
        ``slot_freed``: the move that ended the attempt already gave up the agent's slot
        (``move_task(release_slot_of=...)``), so only the capability slot is left."""
        if task.agent_id:
            if not slot_freed:
                await self.storage.release_agent_slot(task.agent_id, task.task_id)
            await self.limits.release(task)
            if notify:
                self.notify_dispatcher()


Publish = Callable[[str, dict[str, Any]], Awaitable[None]]


async def _no_events(event_type: str, data: dict[str, Any]) -> None:
    return None


async def _no_usage(task: TaskRun, usage: dict[str, Any] | None) -> None:
    return None


def run_event(session: Session) -> dict[str, Any]:
    """What subscribers learn about a run that ended."""
    end = session.finished_at or session.updated_at
    return {
        "sessionId": session.session_id,
        "workflowId": session.workflow_id,
        "workflowVersion": session.workflow_version,
        "status": session.status.value,
        "error": session.error,
        "agentId": session.agent_id,
        "metadata": session.metadata,
        "createdAt": session.created_at.isoformat(),
        "finishedAt": end.isoformat(),
        "durationSeconds": round((end - session.created_at).total_seconds(), 6),
    }


def satisfied_steps(tasks: list[TaskRun]) -> set[str]:
    """Steps that completed or were skipped, or failed but whose fallback completed."""
    satisfied = {t.step_id for t in tasks if t.status in (S.COMPLETED, S.SKIPPED)}
    return satisfied | {t.fallback_for for t in tasks if t.fallback_for and t.status == S.COMPLETED}


def update_last(history: list[TaskAttempt], **changes: Any) -> list[TaskAttempt]:
    """The attempt history with its last entry changed."""
    if not history:
        return history
    return [*history[:-1], history[-1].model_copy(update=changes)]
