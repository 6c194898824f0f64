"""The success path of an attempt: moved to running, then completed, and what follows the
completion (usage, the limits' slot, the metrics, the run's next steps or its end), however it
was written: with an agent's report, with the hand-over's answer, or late."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from ..models import Session, TaskRun, TaskStatus, UsageTotals
from ..observe.logs import log_operation
from ..storage.base import Storage
from ..storage.report_and_task import QueuedNext, TaskUpdate, TaskWritten
from .engine import WorkflowEngine, update_last
from .transitions import INFLIGHT_TASK, apply_move, run_completion, task_move

S = TaskStatus


class TaskCompletions:
    """Moves an attempt to running and to completed, and carries out what follows
    (``TaskOutcomes`` adds the failures)."""

    engine: WorkflowEngine
    storage: Storage

    def running_move(self, task: TaskRun, at: datetime, **changes: Any) -> TaskUpdate:
        """The move of a dispatched attempt to running (the agent says it started)."""
        return task_move(
            S.RUNNING,
            only_from=frozenset({S.DISPATCHED}),
            attempt=task.attempts,
            meaning="running",
            started_at=at,
            history=update_last(task.history, started_at=at),
            **changes,
        )

    async def mark_running(self, task: TaskRun, at: datetime, **changes: Any) -> TaskRun | None:
        """The agent says it started the dispatched attempt (or a pull worker claimed it);
        None when the attempt is no longer dispatched."""
        running = await apply_move(
            self.storage, task.task_id, self.running_move(task, at, **changes)
        )
        if running is not None:
            self.now_running(running)
        return running

    def now_running(self, running: TaskRun) -> None:
        """What follows the move to running, however it was written."""
        self.engine.observe("running", running)

    def completion_move(
        self, task: TaskRun, result: Any, *, usage: dict[str, Any] | None = None
    ) -> TaskUpdate:
        """The move of the current attempt to completed, its agent's slot freed with it, and
        the run's next step it lets start when that one can be queued in the same write
        (next_steps.py; ``TaskUpdate.then``), or whether it ends the run (``ends_run``).

        Not when the attempt reports usage: its next step is queued, and its run completed,
        only once that usage is counted (``now_completed``). A budget reads it before the
        next step is handed over, and before a new run of the workflow or a task for the
        agent is; written with the completion, the step could go out first."""
        engine = self.engine
        now = engine.clock()
        spent: dict[str, Any] = (
            {"usage": (task.usage or UsageTotals()).plus(usage)} if usage else {}
        )
        move = task_move(
            S.COMPLETED,
            only_from=INFLIGHT_TASK,
            attempt=task.attempts,
            release_slot_of=task.agent_id,
            meaning="completed",
            result=result,
            error=None,
            finished_at=now,
            deadline=None,
            awaiting_answer=False,
            # an agent that works inside the request never says it started: it did at hand-over
            started_at=task.started_at or task.dispatched_at,
            history=update_last(task.history, finished_at=now, outcome="completed"),
            **spent,
        )
        limit = engine.settings.max_task_parameters_bytes
        then = engine.shapes.then(task, result, now, parameter_limit=limit)
        if usage:
            return replace(move, then_after_usage=then)
        ends = engine.shapes.ends(task) if then is None else None
        return replace(move, then=then, ends_run=run_completion(ends, now) if ends else None)

    async def complete_task(
        self, task: TaskRun, result: Any, *, usage: dict[str, Any] | None = None
    ) -> bool:
        """Record success of the current attempt; False if it was not in flight any more.
        ``usage`` (tokens, model) goes on the attempt's span."""
        move = self.completion_move(task, result, usage=usage)
        if move.then is None and move.ends_run is None:
            written = TaskWritten(await apply_move(self.storage, task.task_id, move))
        else:
            written = await self.storage.update_task_and_next(task.task_id, move)
        if written.task is None:
            return False
        await self.now_completed(
            written.task, usage, queued=written.queued, ended=written.ended, then=move.planned_then
        )
        return True

    async def now_completed(
        self,
        done: TaskRun,
        usage: dict[str, Any] | None,
        *,
        queued: TaskRun | None = None,
        ended: Session | None = None,
        then: QueuedNext | None = None,
    ) -> None:
        """What follows a completion, however it was written: usage, the limits' slot, the
        metrics, and the run's next steps, in that order: a budget counts the usage before
        the run's next step can be handed over. The run is not read back when the completion
        queued the step it let start (``queued``) or completed the run (``ended``) with it,
        nor when it was the run's last step, nor when the step it lets start, planned with
        it (``then``) but not written with it (the store had no sight of that step's row),
        is still pending: that step is queued on its own."""
        engine = self.engine
        engine.shapes.done(done.task_id)
        await engine.record_usage(done, usage)
        try:
            await engine.release(done, slot_freed=True, notify=False)
            engine.observe("completed", done, usage=usage)
            log_operation(
                "task.completed",
                {"sessionId": done.session_id, "taskId": done.task_id, "agentId": done.agent_id},
            )
            if queued is None and then is not None:
                queued = await self.storage.update_task(
                    then.task_id, then.changes, expect=then.expect, enqueue_at=then.ready_at
                )
            if queued is not None:
                engine.observe("queued", queued)  # as enqueue_task tells of it
                engine.notify_dispatcher(capacity=False, queued=True)
            elif ended is not None:
                await engine.run_completed(ended)
            elif engine.shapes.ends(done):
                await engine.complete_run(done.session_id)
            else:
                await engine.advance(done.session_id)
        finally:
            # once, after the run's next tasks are queued: the pass it wakes finds them and
            # reads the agents along (Dispatcher._first_look), instead of a pass woken by the
            # freed slot racing the queueing and reading the agents after it
            engine.notify_dispatcher()
