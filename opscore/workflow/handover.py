"""The hand-over of an attempt: the workflow's side of the dispatcher (``DispatchHooks``).

The dispatcher sends; this decides what the send means for the task. An attempt starts when a
queued task is handed to an agent; the agent's answer is its outcome when it says completed or
failed (AgentKit's example agent works inside the request); an agent that could not be reached
at all loses the attempt, and liveness hears of it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from ..dispatch.transports import HandoverAnswer
from ..models import Agent, TaskAttempt, TaskRun, TaskStatus
from ..models.usage import usage_from
from ..observe.logs import log_operation
from .outcomes import GIVEN_UP, TaskOutcomes, timeout_error
from .transitions import INFLIGHT_TASK, TERMINAL_TASK, move_task

S = TaskStatus


class Handovers:
    """Implements ``dispatch.hooks.DispatchHooks`` on top of ``TaskOutcomes``."""

    def __init__(self, outcomes: TaskOutcomes) -> None:
        self.outcomes = outcomes
        self.engine = outcomes.engine
        self.storage = outcomes.storage
        # told the id of an agent a hand-over could not reach (liveness counts a probe miss)
        self.unreachable_listeners: list[Callable[[str], Awaitable[None]]] = []
        # an A2A agent's answer: the remote task, whose state decides (workflow/a2a.py)
        self.remote_answered: Callable[[TaskRun, Agent, dict[str, Any]], Awaitable[None]] | None
        self.remote_answered = None

    async def mark_dispatched(
        self, task: TaskRun, agent: Agent, now: datetime, *, ack_entry: bool = False
    ) -> TaskRun | None:
        """Start a new attempt on ``agent``, taking one of its slots (and with ``ack_entry``
        acknowledging the task's queue entry) in the same step; None if the task is no longer
        queued; NoFreeSlotError when the agent has no free slot."""
        pull = agent.delivery == "pull"
        record = TaskAttempt(
            attempt=len(task.history) + 1, agent_id=agent.agent_id, dispatched_at=now
        )
        dispatched = await move_task(
            self.storage,
            task.task_id,
            S.DISPATCHED,
            only_from=frozenset({S.QUEUED}),
            attempt=task.attempts,
            claim_slot_of=agent.agent_id,
            ack_entry=ack_entry,
            attempts=task.attempts + 1,
            agent_id=agent.agent_id,
            dispatched_at=now,
            started_at=None,
            deadline=now + timedelta(seconds=task.timeout_seconds),
            history=[*task.history, record],
            # straight to the agent, its answer decides; AgentKit's 202 never carries one, nor
            # does a pull worker's claim: their results decide. An agent whose reports name
            # their task is taken at its word: nothing waits for its answer, so a 202 from it
            # needs no write (_acknowledged)
            awaiting_answer=self.engine.settings.dispatch_via == "direct"
            and not pull
            and not agent.names_tasks,
            deferred_report=None,
            pull=pull,
            # a worker that does not claim the task within its lease loses it (workers.py)
            lease_until=now + timedelta(seconds=self.engine.settings.worker_lease_seconds)
            if pull
            else None,
            cancel_acknowledged_at=None,
            a2a=None,  # an A2A agent's answer names this attempt's remote task
        )
        if dispatched is None:
            return None
        self.engine.shapes.handed_over(dispatched)
        self.engine.observe("dispatched", dispatched)
        log_operation(
            "task.dispatched",
            {
                "sessionId": task.session_id,
                "taskId": task.task_id,
                "agentId": agent.agent_id,
                "attempt": dispatched.attempts,
            },
        )
        return dispatched

    async def dispatch_failed(
        self, task: TaskRun, error: str, *, unreachable: bool, timed_out: bool = False
    ) -> None:
        """The hand-over itself failed: fail that attempt, unless a newer one has started.
        An agent that could not be reached at all loses the attempt instead (uncharged,
        bounded by ``max_lost_attempts``) and liveness hears of it, so a dead agent stops
        taking work after ``OPSCORE_PROBE_MISSES`` such failures instead of eating every
        retry of the task."""
        current = await self.storage.get_task(task.task_id)
        if current is None or current.attempts != task.attempts:
            return
        if unreachable and current.agent_id:
            await self.outcomes.requeue_lost(current, f"unreachable: {error}")
            for listener in self.unreachable_listeners:
                await listener(current.agent_id)
            return
        if timed_out:  # the same outcome as the timeout sweep's, whichever notices first
            error, outcome = timeout_error(current), "timeout"
        else:
            outcome = "dispatch_error"
        await self.outcomes.fail_attempt(current, error, outcome=outcome)

    async def budget_refused(self, task: TaskRun, reason: str) -> None:
        """Its workflow spent its budget and says fail: the task fails without being sent
        (retrying cannot help until the budget has room), and so does its run."""
        failed = await move_task(
            self.storage,
            task.task_id,
            S.FAILED,
            only_from=frozenset({S.QUEUED}),
            attempt=task.attempts,
            error=f"not dispatched: {reason}",
            finished_at=self.engine.clock(),
        )
        if failed is None:
            return
        self.engine.observe("failed", failed)
        await self.outcomes.after_exhausted(failed)

    async def handover_answered(self, task: TaskRun, agent: Agent, answer: HandoverAnswer) -> None:
        """The hand-over's answer: completed or failed ends the attempt; anything else means
        the agent works in the background and its reports decide (docs/agentkit.md)."""
        if answer.remote is not None and self.remote_answered is not None:
            await self.remote_answered(task, agent, answer.remote)
            return
        if answer.outcome not in ("completed", "failed"):
            await self._acknowledged(task)
            return
        current = await self.storage.get_task(task.task_id)
        if current is None or current.status in TERMINAL_TASK:
            return
        same_attempt = (
            current.attempts == task.attempts
            and current.status in INFLIGHT_TASK
            and current.agent_id == agent.agent_id
        )
        if not same_attempt:
            answered = current.history[len(task.history) - 1 : len(task.history)]
            if answer.outcome == "completed" and answered and answered[0].outcome in GIVEN_UP:
                await self.outcomes.complete_late(
                    current, agent.agent_id, answer.result, via="answer"
                )
            return
        if answer.outcome == "completed":
            await self.outcomes.complete_task(current, answer.result, usage=answer.usage)
        elif answer.outcome == "failed":
            # a 2xx that says it failed is the agent's error; a 4xx/5xx refused the hand-over
            refused = not 200 <= answer.status_code < 300
            await self.outcomes.fail_attempt(
                current,
                answer.error or "agent failed",
                outcome="dispatch_error" if refused else "agent_error",
            )

    async def _acknowledged(self, task: TaskRun) -> None:
        """An acknowledgement (202, or a 2xx without a result): the answer is no longer
        awaited, in one compare-and-set on this very attempt (nothing when a newer attempt
        or an outcome came first). A report that came before it, and was kept, decides now.
        An attempt that never awaited its answer (the agent names its tasks) has nothing to
        change: its reports were never kept back."""
        if not task.awaiting_answer:
            return
        current = await self.storage.update_task(
            task.task_id,
            {"awaiting_answer": False},
            expect=[s.value for s in INFLIGHT_TASK],
            attempt=task.attempts,
        )
        if current is None or current.deferred_report is None:
            return
        # the agent's report beat its own acknowledgement here: it decides now
        report = current.deferred_report
        if report.get("state") == "error":
            await self.outcomes.fail_attempt(
                current,
                str(report.get("error") or "agent reported error"),
                outcome="agent_error",
            )
        else:
            await self.outcomes.complete_task(
                current, report.get("result"), usage=usage_from(report.get("usage"))
            )
