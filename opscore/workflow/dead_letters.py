"""Dead letters: tasks that exhausted their attempts with no fallback, and re-driving them."""

from __future__ import annotations

from ..errors import ConflictError, GoneError, NotFoundError
from ..models import DeadLetter, Page, SessionStatus, TaskRun, TaskStatus
from ..observe.logs import log_operation
from .admissions import RunAdmissions
from .engine import SESSION_FAILED, WorkflowEngine
from .step_inputs import substitution_context
from .transitions import move_session_or_raise, move_task

S = TaskStatus


class DeadLetterService:
    """Lists dead letters and gives one a fresh set of attempts."""

    def __init__(self, engine: WorkflowEngine, admissions: RunAdmissions) -> None:
        self.engine = engine
        self.storage = engine.storage
        self.admissions = admissions

    async def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        """One page of dead letters, newest first."""
        return await self.storage.list_dead_letters(offset=offset, limit=limit)

    async def redrive(self, task_id: str) -> TaskRun:
        """Give a dead-lettered task a fresh set of attempts and reopen its run."""
        engine = self.engine
        letter = await self.storage.pop_dead_letter(task_id)
        if letter is None:
            raise NotFoundError(
                f"Task '{task_id}' is not in the dead-letter list", code="NOT_DEAD_LETTERED"
            )
        found = await self.storage.get_session(letter.session_id)
        if found is None:
            # retention removed the run: the letter can never be re-driven; it goes too
            raise GoneError(
                f"Task '{task_id}' belonged to session '{letter.session_id}', which retention "
                "has removed; it can no longer be re-driven",
                code="SESSION_PRUNED",
            )
        session = found
        if session.status in (SessionStatus.CANCELLED, SessionStatus.COMPLETED):
            # (a last attempt that failed while an operator cancelled the run) it stays listed
            await self.storage.add_dead_letter(letter)
            raise ConflictError(
                f"Session '{session.session_id}' is {session.status.value}; "
                "its tasks can no longer be re-driven",
                code="SESSION_CLOSED",
            )
        if session.status == SessionStatus.FAILED:
            await move_session_or_raise(
                self.storage,
                session,
                SessionStatus.RUNNING,
                error=None,
                finished_at=None,
                updated_at=engine.clock(),
            )
            await self.admissions.hold(session)
            if engine.telemetry is not None and session.trace_id:
                engine.telemetry.start_run(
                    session.session_id, session.trace_id, None, session.workflow_id or ""
                )
        for task in await self.storage.session_tasks(session.session_id):
            if task.status == S.CANCELLED and task.cancel_reason == SESSION_FAILED:
                await move_task(
                    self.storage, task.task_id, S.PENDING, cancel_reason=None, agent_id=None
                )
        task = await engine.get_task(task_id)
        tasks = await self.storage.session_tasks(session.session_id)
        await engine.enqueue_task(
            task.model_copy(update={"delay_seconds": 0}),
            substitution_context(session, tasks),
            from_status=frozenset({S.FAILED}),
            uncharged_attempts=task.attempts,
            error=None,
            finished_at=None,
        )
        log_operation("task.redriven", {"sessionId": session.session_id, "taskId": task_id})
        await engine.advance(session.session_id)
        return await engine.get_task(task_id)
