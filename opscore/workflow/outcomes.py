"""Outcomes of attempts: a task handed over, running, completed, failed, timed out or lost.

A failed attempt is retried with exponential backoff and jitter while attempts remain; then the
fallback runs if there is one; otherwise the task is dead-lettered and its run fails.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Collection
from datetime import datetime, timedelta
from typing import Any

from ..models import TaskRun, TaskStatus
from ..observe.logs import log_operation
from .completions import TaskCompletions
from .engine import WorkflowEngine, update_last
from .step_inputs import substitution_context
from .transitions import INFLIGHT_TASK, move_task

S = TaskStatus


def timeout_error(task: TaskRun) -> str:
    """The error of an attempt that ran past its timeout (the sweep's and the hand-over's)."""
    return f"timed out after {task.timeout_seconds:g}s"


# attempts Ops-Core gave up on without hearing from the agent: their late results still count
GIVEN_UP = frozenset({"agent_lost", "timeout"})


class TaskOutcomes(TaskCompletions):
    """Applies what happened to an attempt: running, completed, failed, retried, lost."""

    def __init__(self, engine: WorkflowEngine, *, rng: Callable[[], float] = random.random) -> None:
        self.engine = engine
        self.storage = engine.storage
        self.rng = rng
        # Tasks whose hand-over answer this process holds and is still writing (the store was
        # away): the dispatcher sets it. The sweep leaves them to that answer.
        self.answers_held: Callable[[], Collection[str]] = tuple
        # told of an attempt given up for its timeout (an A2A agent's task is then cancelled)
        self.timed_out_listeners: list[Callable[[TaskRun], None]] = []

    async def complete_late(self, task: TaskRun, agent_id: str, result: Any, *, via: str) -> bool:
        """A result for an attempt that was already given up (the agent was thought lost, or
        the attempt timed out) while the task is still open: it is used, and the newer attempt
        is withdrawn. False when the task moved on meanwhile."""
        engine = self.engine
        now = engine.clock()
        withdrawn = task.status in INFLIGHT_TASK
        history = task.history
        if withdrawn:
            history = update_last(history, finished_at=now, outcome="withdrawn")
        done = await move_task(
            self.storage,
            task.task_id,
            S.COMPLETED,
            only_from=frozenset({S.QUEUED, *INFLIGHT_TASK}),
            attempt=task.attempts,
            release_slot_of=task.agent_id if withdrawn else None,
            result=result,
            error=None,
            finished_at=now,
            deadline=None,
            awaiting_answer=False,
            history=history,
        )
        if done is None:
            return False
        if withdrawn:
            await engine.release(task, slot_freed=True)
        engine.observe("completed", done)
        log_operation(
            "task.completed_late",
            {
                "sessionId": done.session_id,
                "taskId": done.task_id,
                "agentId": agent_id,
                "via": via,
                "withdrawnFrom": task.agent_id if withdrawn else None,
            },
            level=logging.WARNING,
        )
        await engine.advance(done.session_id)
        return True

    async def fail_attempt(self, task: TaskRun, error: str, *, outcome: str) -> bool:
        """One attempt failed: retry with backoff, else fallback, else dead-letter the task."""
        engine = self.engine
        now = engine.clock()
        history = update_last(task.history, finished_at=now, outcome=outcome, error=error)
        charged = task.attempts - task.uncharged_attempts
        common: dict[str, Any] = {
            "error": error,
            "deadline": None,
            "history": history,
            "awaiting_answer": False,
        }
        if charged < task.max_attempts:
            ready_at = now + timedelta(seconds=self.backoff(task, charged))
            moved = await move_task(
                self.storage,
                task.task_id,
                S.QUEUED,
                only_from=INFLIGHT_TASK,
                attempt=task.attempts,
                release_slot_of=task.agent_id,
                ready_at=ready_at,
                **common,
            )
            if moved is None:
                return False
            await self._back_in_queue(task, moved, ready_at, outcome=outcome, error=error)
            log_operation(
                "task.retry",
                {
                    "sessionId": task.session_id,
                    "taskId": task.task_id,
                    "error": error,
                    "attempt": task.attempts,
                    "retryAt": ready_at.isoformat(),
                },
                level=logging.WARNING,
            )
            return True
        failed = await move_task(
            self.storage,
            task.task_id,
            S.FAILED,
            only_from=INFLIGHT_TASK,
            attempt=task.attempts,
            release_slot_of=task.agent_id,
            finished_at=now,
            **common,
        )
        if failed is None:
            return False
        await engine.release(task, slot_freed=True)
        engine.observe("attempt_failed", failed, outcome=outcome, error=error)
        engine.observe("failed", failed)
        await self.after_exhausted(failed)
        return True

    def backoff(self, task: TaskRun, failures: int) -> float:
        """Exponential backoff with +/- jitter, capped at the task's maximum."""
        base = task.backoff_seconds * (task.backoff_multiplier ** max(failures - 1, 0))
        base = min(base, task.max_backoff_seconds)
        return max(0.0, base * (1 + task.jitter * (2 * self.rng() - 1)))

    async def after_exhausted(self, task: TaskRun) -> None:
        """A task failed for good: its fallback runs, else it is dead-lettered."""
        engine = self.engine
        context = {"sessionId": task.session_id, "taskId": task.task_id, "error": task.error}
        if task.fallback_task_id:
            tasks = await self.storage.session_tasks(task.session_id)
            fallback = next((t for t in tasks if t.step_id == task.fallback_task_id), None)
            session = await self.storage.get_session(task.session_id)
            if fallback is not None and session is not None:
                log_operation("task.fallback", {**context, "fallback": fallback.step_id}, level=30)
                await engine.enqueue_task(fallback, substitution_context(session, tasks))
                return
        await engine.dead_letter(task)

    async def requeue_lost(self, task: TaskRun, reason: str) -> bool:
        """The agent vanished mid-task: queue the task again without charging the attempt,
        unless the task already lost ``max_lost_attempts``: then the attempt is a failure, so
        the retry policy (and at the end the dead letters) bound a task that keeps losing.
        False when the attempt had already moved on."""
        engine = self.engine
        if task.uncharged_attempts >= engine.settings.max_lost_attempts:
            return await self.fail_attempt(
                task, f"{reason} (lost attempts exhausted)", outcome="agent_lost"
            )
        now = engine.clock()
        moved = await move_task(
            self.storage,
            task.task_id,
            S.QUEUED,
            only_from=INFLIGHT_TASK,
            attempt=task.attempts,
            release_slot_of=task.agent_id,
            ready_at=now,
            deadline=None,
            awaiting_answer=False,
            uncharged_attempts=task.uncharged_attempts + 1,
            history=update_last(task.history, finished_at=now, outcome="agent_lost", error=reason),
        )
        if moved is None:
            return False
        await self._back_in_queue(task, moved, now, outcome="agent_lost", error=reason)
        log_operation(
            "task.requeued",
            {
                "sessionId": task.session_id,
                "taskId": task.task_id,
                "agentId": task.agent_id,
                "reason": reason,
            },
            level=logging.WARNING,
        )
        return True

    async def _back_in_queue(
        self, task: TaskRun, moved: TaskRun, ready_at: datetime, *, outcome: str, error: str
    ) -> None:
        # the attempt ended (moved is the task after its move back to QUEUED, which freed the
        # agent's slot): free the capability slot, then queue the task for ready_at (not in
        # the move: a slot, agent's or capability's, that the old attempt still held would be
        # taken over by the new one, which would then lose it), and record the retry
        await self.engine.release(task, slot_freed=True)
        await self.storage.enqueue(task.task_id, priority=task.priority, ready_at=ready_at)
        self.engine.observe("attempt_failed", moved, outcome=outcome, error=error)
        self.engine.observe("retry", moved)

    async def sweep_timeouts(self, now: datetime, tasks: list[TaskRun]) -> None:
        """Fail every attempt whose deadline has passed (run by the dispatcher's loop), except
        those whose answer this process already has and is still writing: after an outage
        longer than a task's timeout the sweep would otherwise run first, and the task twice.
        ``tasks``: the in-flight tasks as read for this round (inflight_sweeps.py)."""
        held = self.answers_held()
        for task in tasks:
            if task.status == S.WAITING:  # a wait's timeout decides it (decisions.py)
                continue
            if task.deadline is None or task.deadline > now or task.task_id in held:
                continue
            if await self.fail_attempt(task, timeout_error(task), outcome="timeout"):
                for listener in self.timed_out_listeners:
                    listener(task)
