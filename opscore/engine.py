"""Workflow runs: templates, sessions' task graphs, outcomes, retries, fallbacks, dead letters.

Every task status change goes through ``transitions.move_task`` (a compare-and-set), so a
state report, an explicit result, a timeout and a dispatcher racing on one task never both
win. Nothing here imports FastAPI.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .config import Settings
from .errors import ConflictError, NotFoundError, PermissionDeniedError
from .lifecycle import AVAILABLE_STATES, OFFLINE, Lifecycle
from .logging_config import log_operation
from .models import (
    Agent,
    DeadLetter,
    Page,
    RunAccepted,
    Session,
    SessionDetail,
    SessionStatus,
    StateRecord,
    TaskAttempt,
    TaskResultReport,
    TaskRun,
    TaskStatus,
    WorkflowDefinition,
    WorkflowTemplate,
    utcnow,
)
from .storage.base import Storage
from .telemetry import Telemetry
from .tracing import current_span, new_trace_id
from .transitions import (
    INFLIGHT_TASK,
    TERMINAL_TASK,
    move_session,
    move_session_or_raise,
    move_task,
)
from .workflow import dependencies, substitute, validate_definition

logger = logging.getLogger("opscore.engine")
S = TaskStatus
_SESSION_FAILED = "session failed"


class WorkflowEngine:
    """Starts runs and turns agents' reports into task outcomes."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        lifecycle: Lifecycle,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.lifecycle = lifecycle
        self.clock = clock
        self.rng = rng
        self.wakeup = asyncio.Event()
        self.telemetry: Telemetry | None = None
        lifecycle.state_listeners.append(self.on_agent_state)
        lifecycle.gone_listeners.append(self.on_agent_gone)

    def notify_dispatcher(self) -> None:
        self.wakeup.set()

    def observe(self, event: str, task: TaskRun, **extra: Any) -> None:
        """Tell telemetry (metrics and spans) what happened to a task."""
        if self.telemetry is not None:
            self.telemetry.on_task_event(event, task, extra)

    # --- templates --------------------------------------------------------------------------
    async def create_template(
        self, definition: WorkflowDefinition, *, source: str = "api"
    ) -> tuple[WorkflowTemplate, bool]:
        """Store a template version; an identical repeat is a no-op, a different one 409."""
        validate_definition(definition, max_tasks=self.settings.max_template_tasks)
        template = WorkflowTemplate(
            **definition.model_dump(), created_at=self.clock(), source=source
        )
        existing = await self.storage.save_workflow(template)
        if existing is None:
            log_operation(
                "workflow.created", {"workflowId": template.id, "version": template.version}
            )
            return template, True
        if WorkflowDefinition.model_validate(existing.model_dump()) == definition:
            return existing, False
        raise ConflictError(
            f"Workflow '{definition.id}' version '{definition.version}' exists with a different "
            "definition; bump the version",
            code="WORKFLOW_VERSION_EXISTS",
        )

    async def get_template(self, workflow_id: str, version: str | None = None) -> WorkflowTemplate:
        template = await self.storage.get_workflow(workflow_id, version)
        if template is None:
            suffix = f" version '{version}'" if version else ""
            raise NotFoundError(
                f"Workflow '{workflow_id}'{suffix} not found", code="WORKFLOW_NOT_FOUND"
            )
        return template

    async def delete_template(self, workflow_id: str, version: str | None = None) -> int:
        removed = await self.storage.delete_workflow(workflow_id, version)
        if not removed:
            raise NotFoundError(f"Workflow '{workflow_id}' not found", code="WORKFLOW_NOT_FOUND")
        log_operation("workflow.deleted", {"workflowId": workflow_id, "version": version})
        return removed

    async def list_templates(self, *, offset: int, limit: int) -> Page[WorkflowTemplate]:
        return await self.storage.list_workflows(offset=offset, limit=limit)

    # --- starting runs ----------------------------------------------------------------------
    async def start_run(
        self,
        definition: WorkflowDefinition,
        *,
        payload: dict[str, Any],
        agent_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        trace_id: str | None = None,
    ) -> RunAccepted:
        """Create a session and its task runs, then queue the tasks that can start."""
        validate_definition(definition, max_tasks=self.settings.max_template_tasks)
        if agent_id is not None:
            await self.lifecycle.get_agent(agent_id)
        session_id = str(uuid.uuid4())
        if idempotency_key:
            earlier = await self.storage.remember_idempotency_key(
                idempotency_key, session_id, now=self.clock(), ttl=self.settings.idempotency_ttl
            )
            if earlier is not None:
                first = await self.storage.get_session(earlier)
                return RunAccepted(
                    message="Idempotency-Key seen before: returning the original run",
                    session_id=earlier,
                    workflow_id=first.workflow_id if first and first.workflow_id else definition.id,
                    duplicate=True,
                )
        now = self.clock()
        tasks = self._build_tasks(definition, session_id, agent_id, now)
        request_span = current_span.get()
        if request_span is not None:
            request_span.attributes["keep"] = True
        trace_id = trace_id or (request_span.trace_id if request_span else new_trace_id())
        if self.telemetry is not None:
            self.telemetry.start_run(
                session_id, trace_id, request_span.span_id if request_span else None, definition.id
            )
        session = Session(
            session_id=session_id,
            kind="workflow",
            name=definition.name or definition.id,
            workflow_id=definition.id,
            workflow_version=definition.version,
            agent_id=agent_id,
            initial_payload=payload,
            metadata=metadata or {},
            task_ids={t.step_id: t.task_id for t in tasks},
            trace_id=trace_id,
            created_at=now,
            updated_at=now,
        )
        await self.storage.save_tasks(tasks)
        await self.storage.save_session(session)
        log_operation(
            "workflow.started",
            {"sessionId": session_id, "workflowId": definition.id, "agentId": agent_id},
        )
        await self.advance(session_id)
        return RunAccepted(
            message="Workflow run accepted", session_id=session_id, workflow_id=definition.id
        )

    def _build_tasks(
        self, definition: WorkflowDefinition, session_id: str, pinned: str | None, now: datetime
    ) -> list[TaskRun]:
        deps = dependencies(definition)
        fallback_for = {
            t.fallback_task_id: t.task_id for t in definition.tasks if t.fallback_task_id
        }
        settings = self.settings
        runs = []
        for t in definition.tasks:
            if t.target == "agent" or (t.target == "auto" and t.agent_id):
                target_agent = t.agent_id
            elif t.target == "workflow_agent" or (t.target == "auto" and pinned):
                target_agent = pinned
            else:
                target_agent = None
            runs.append(
                TaskRun(
                    task_id=f"task-{uuid.uuid4().hex}",
                    session_id=session_id,
                    step_id=t.task_id,
                    name=t.name or t.task_id,
                    agent_capability=t.agent_capability,
                    target_agent_id=target_agent,
                    parameters=t.parameters,
                    depends_on=sorted(deps[t.task_id]),
                    priority=t.priority,
                    timeout_seconds=t.timeout_seconds or settings.default_task_timeout,
                    delay_seconds=t.delay_seconds,
                    max_attempts=t.retry.max_attempts or settings.default_max_attempts,
                    backoff_seconds=t.retry.backoff_seconds
                    if t.retry.backoff_seconds is not None
                    else settings.retry_backoff_seconds,
                    backoff_multiplier=t.retry.backoff_multiplier,
                    max_backoff_seconds=t.retry.max_backoff_seconds
                    if t.retry.max_backoff_seconds is not None
                    else settings.retry_max_backoff_seconds,
                    jitter=t.retry.jitter,
                    fallback_task_id=t.fallback_task_id,
                    fallback_for=fallback_for.get(t.task_id),
                    created_at=now,
                )
            )
        return runs

    # --- recovery ---------------------------------------------------------------------------
    async def recover(self) -> int:
        """After a restart on a durable store, finish what a crash interrupted: give queued
        tasks their queue entry back, advance running runs, and free leaked agent slots.
        Idempotent. Returns the number of running sessions it looked at."""
        session_ids: list[str] = []
        while True:
            page = await self.storage.list_sessions(
                status=SessionStatus.RUNNING.value,
                workflow_id=None,
                agent_id=None,
                offset=len(session_ids),
                limit=500,
            )
            session_ids += [s.session_id for s in page.items]
            if not page.items or len(session_ids) >= page.total:
                break
        for session_id in session_ids:
            for task in await self.storage.session_tasks(session_id):
                if task.status == S.QUEUED:
                    await self.storage.enqueue(
                        task.task_id, priority=task.priority, ready_at=task.ready_at or self.clock()
                    )
            await self.advance(session_id)
        await self.reconcile_slots()
        if session_ids:
            log_operation("workflow.recovered", {"sessions": len(session_ids)})
        self.notify_dispatcher()
        return len(session_ids)

    async def reconcile_slots(self) -> None:
        """Drop agents' active-task entries whose task is no longer in flight on them."""
        offset = 0
        while True:
            page = await self.storage.list_agents(
                state=None, capability=None, offset=offset, limit=500
            )
            for agent in page.items:
                for task_id in agent.active_tasks:
                    task = await self.storage.get_task(task_id)
                    if (
                        task is None
                        or task.status not in INFLIGHT_TASK
                        or task.agent_id != agent.agent_id
                    ):
                        await self.storage.release_agent_slot(agent.agent_id, task_id)
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return

    # --- progress ---------------------------------------------------------------------------
    async def advance(self, session_id: str) -> None:
        """Queue every pending task whose prerequisites are met; complete the run when done."""
        session = await self.storage.get_session(session_id)
        if session is None or session.status != SessionStatus.RUNNING:
            return
        tasks = await self.storage.session_tasks(session_id)
        satisfied = _satisfied_steps(tasks)
        fallbacks = {t.step_id for t in tasks if t.fallback_for}
        context = _substitution_context(session, tasks)
        for task in tasks:
            if (
                task.status == S.PENDING
                and task.step_id not in fallbacks
                and all(d in satisfied for d in task.depends_on)
            ):
                await self.enqueue_task(task, context)
        if all(t.step_id in satisfied for t in tasks if t.step_id not in fallbacks):
            await self._finish_session(session, tasks)

    async def schedule_task(self, task: TaskRun, delay: float) -> None:
        """Queue a pending task to become ready ``delay`` seconds from now."""
        session = await self.lifecycle.get_session(task.session_id)
        tasks = await self.storage.session_tasks(task.session_id)
        await self.enqueue_task(
            task.model_copy(update={"delay_seconds": delay}), _substitution_context(session, tasks)
        )

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
        ready_at = now + timedelta(seconds=task.delay_seconds)
        queued = await move_task(
            self.storage,
            task.task_id,
            S.QUEUED,
            only_from=from_status or frozenset({S.PENDING}),
            queued_at=now,
            ready_at=ready_at,
            resolved_parameters=substitute(task.parameters, context),
            **changes,
        )
        if queued is not None:
            await self.storage.enqueue(task.task_id, priority=task.priority, ready_at=ready_at)
            self.observe("queued", queued)
            self.notify_dispatcher()

    async def _finish_session(self, session: Session, tasks: list[TaskRun]) -> None:
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
        now = self.clock()
        done = await move_session(
            self.storage,
            session.session_id,
            SessionStatus.COMPLETED,
            finished_at=now,
            updated_at=now,
        )
        if done is None:
            return
        self._end_run(session.session_id, "completed")
        log_operation(
            "workflow.completed",
            {"sessionId": session.session_id, "workflowId": session.workflow_id},
        )

    # --- outcomes ---------------------------------------------------------------------------
    async def mark_running(self, task: TaskRun, at: datetime) -> None:
        running = await move_task(
            self.storage,
            task.task_id,
            S.RUNNING,
            only_from=frozenset({S.DISPATCHED}),
            attempt=task.attempts,
            started_at=at,
            history=_update_last(task.history, started_at=at),
        )
        if running is not None:
            self.observe("running", running)

    async def complete_task(self, task: TaskRun, result: Any) -> bool:
        """Record success of the current attempt; False if it was not in flight any more."""
        now = self.clock()
        done = await move_task(
            self.storage,
            task.task_id,
            S.COMPLETED,
            only_from=INFLIGHT_TASK,
            attempt=task.attempts,
            result=result,
            error=None,
            finished_at=now,
            deadline=None,
            history=_update_last(task.history, finished_at=now, outcome="completed"),
        )
        if done is None:
            return False
        await self._release(done)
        self.observe("completed", done)
        log_operation(
            "task.completed",
            {"sessionId": done.session_id, "taskId": done.task_id, "agentId": done.agent_id},
        )
        await self.advance(done.session_id)
        return True

    async def fail_attempt(self, task: TaskRun, error: str, *, outcome: str) -> bool:
        """One attempt failed: retry with backoff, else fallback, else dead-letter the task."""
        now = self.clock()
        history = _update_last(task.history, finished_at=now, outcome=outcome, error=error)
        charged = task.attempts - task.uncharged_attempts
        common = {"error": error, "deadline": None, "history": history}
        if charged < task.max_attempts:
            ready_at = now + timedelta(seconds=self.backoff(task, charged))
            moved = await move_task(
                self.storage,
                task.task_id,
                S.QUEUED,
                only_from=INFLIGHT_TASK,
                attempt=task.attempts,
                ready_at=ready_at,
                **common,
            )
            if moved is None:
                return False
            await self._release(task)
            await self.storage.enqueue(task.task_id, priority=task.priority, ready_at=ready_at)
            self.observe("attempt_failed", moved, outcome=outcome, error=error)
            self.observe("retry", moved)
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
            finished_at=now,
            **common,
        )
        if failed is None:
            return False
        await self._release(task)
        self.observe("attempt_failed", failed, outcome=outcome, error=error)
        self.observe("failed", failed)
        await self._after_exhausted(failed)
        return True

    def backoff(self, task: TaskRun, failures: int) -> float:
        """Exponential backoff with +/- jitter, capped at the task's maximum."""
        base = task.backoff_seconds * (task.backoff_multiplier ** max(failures - 1, 0))
        base = min(base, task.max_backoff_seconds)
        return max(0.0, base * (1 + task.jitter * (2 * self.rng() - 1)))

    async def _after_exhausted(self, task: TaskRun) -> None:
        context = {"sessionId": task.session_id, "taskId": task.task_id, "error": task.error}
        if task.fallback_task_id:
            tasks = await self.storage.session_tasks(task.session_id)
            fallback = next((t for t in tasks if t.step_id == task.fallback_task_id), None)
            session = await self.storage.get_session(task.session_id)
            if fallback is not None and session is not None:
                log_operation("task.fallback", {**context, "fallback": fallback.step_id}, level=30)
                await self.enqueue_task(fallback, _substitution_context(session, tasks))
                return
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
        log_operation("task.dead_lettered", context, level=logging.ERROR)
        await self._fail_session(task.session_id, f"Task '{task.step_id}' failed: {task.error}")

    async def _fail_session(self, session_id: str, error: str) -> None:
        # the rest of the run is cancelled first, so a reader never sees a failed session
        # with tasks still open (a session that was already over has none left to cancel)
        await self._cancel_open_tasks(session_id, _SESSION_FAILED)
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
        self._end_run(session_id, "failed")
        log_operation("workflow.failed", {"sessionId": session_id, "error": error}, level=40)

    async def _cancel_open_tasks(self, session_id: str, reason: str) -> None:
        for task in await self.storage.session_tasks(session_id):
            if task.status in TERMINAL_TASK:
                continue
            cancelled = await move_task(
                self.storage, task.task_id, S.CANCELLED, cancel_reason=reason, deadline=None
            )
            if cancelled is None:
                continue
            self.observe("cancelled", cancelled)
            if task.status in INFLIGHT_TASK:
                await self._release(task)

    def _end_run(self, session_id: str, status: str) -> None:
        if self.telemetry is not None:
            self.telemetry.end_run(session_id, status)

    async def _release(self, task: TaskRun) -> None:
        if task.agent_id:
            await self.storage.release_agent_slot(task.agent_id, task.task_id)
            self.notify_dispatcher()

    async def requeue_lost(self, task: TaskRun, reason: str) -> None:
        """The agent vanished mid-task: queue the task again without charging the attempt."""
        now = self.clock()
        moved = await move_task(
            self.storage,
            task.task_id,
            S.QUEUED,
            only_from=INFLIGHT_TASK,
            attempt=task.attempts,
            ready_at=now,
            deadline=None,
            uncharged_attempts=task.uncharged_attempts + 1,
            history=_update_last(task.history, finished_at=now, outcome="agent_lost", error=reason),
        )
        if moved is None:
            return
        await self._release(task)
        await self.storage.enqueue(task.task_id, priority=task.priority, ready_at=now)
        self.observe("attempt_failed", moved, outcome="agent_lost", error=reason)
        self.observe("retry", moved)
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

    # --- agent reports ----------------------------------------------------------------------
    async def on_agent_state(self, agent: Agent, record: StateRecord) -> None:
        """Turn an agent's state report into outcomes for the tasks it holds."""
        named = record.details.get("opscore_task_id")
        if isinstance(named, str):
            targets = [named] if named in agent.active_tasks else []
            if not targets:
                log_operation(
                    "task.report_ignored",
                    {
                        "agentId": agent.agent_id,
                        "taskId": named,
                        "state": record.state,
                        "reason": "task not in flight on this agent",
                    },
                )
        else:
            targets = list(agent.active_tasks)
        for task_id in targets:
            task = await self.storage.get_task(task_id)
            if task is None or task.status not in INFLIGHT_TASK or task.agent_id != agent.agent_id:
                continue
            await self._apply_state(task, record, named=isinstance(named, str))
        if record.state in AVAILABLE_STATES:
            self.notify_dispatcher()

    async def _apply_state(self, task: TaskRun, record: StateRecord, *, named: bool) -> None:
        state, details = record.state, record.details
        if state in ("active", "busy"):
            await self.mark_running(task, record.received_at)
        elif state in AVAILABLE_STATES and (named or task.status == S.RUNNING):
            await self.complete_task(task, details.get("result"))
        elif state == "error":
            message = details.get("error") or details.get("message") or "agent reported error"
            await self.fail_attempt(task, str(message)[:2000], outcome="agent_error")
        elif state == OFFLINE:
            await self.requeue_lost(task, "agent went offline")

    async def on_agent_gone(self, agent: Agent) -> None:
        for task_id in agent.active_tasks:
            task = await self.storage.get_task(task_id)
            if task is not None and task.status in INFLIGHT_TASK:
                await self.requeue_lost(task, "agent deregistered")

    async def report_result(
        self, task_id: str, report: TaskResultReport, *, allowed_agents: frozenset[str] | None
    ) -> TaskRun:
        """An explicit result (``POST /tasks/{id}/result``); late or duplicate ones are 409."""
        task = await self.get_task(task_id)
        if allowed_agents is not None and task.agent_id not in allowed_agents:
            raise PermissionDeniedError(
                f"This key may not report for task '{task_id}'", code="AGENT_NOT_ALLOWED"
            )
        if report.agent_id is not None and report.agent_id != task.agent_id:
            raise ConflictError(
                f"Task '{task_id}' is assigned to agent '{task.agent_id}', not '{report.agent_id}'",
                code="TASK_NOT_ASSIGNED",
            )
        if task.status not in INFLIGHT_TASK:
            raise ConflictError(
                f"Task '{task_id}' is {task.status.value}; it takes no result now",
                code="TASK_NOT_IN_FLIGHT",
            )
        if report.status == "completed":
            applied = await self.complete_task(task, report.result)
        else:
            applied = await self.fail_attempt(
                task, report.error or "agent reported failure", outcome="failed"
            )
        if not applied:
            raise ConflictError(
                f"Task '{task_id}' changed while the result was applied; it was not used",
                code="TASK_NOT_IN_FLIGHT",
            )
        return await self.get_task(task_id)

    # --- reading, cancelling, re-driving ----------------------------------------------------
    async def get_task(self, task_id: str) -> TaskRun:
        task = await self.storage.get_task(task_id)
        if task is None:
            raise NotFoundError(f"Task '{task_id}' not found", code="TASK_NOT_FOUND")
        return task

    async def session_detail(self, session_id: str) -> SessionDetail:
        session = await self.lifecycle.get_session(session_id)
        tasks = await self.storage.session_tasks(session_id)
        end = session.finished_at or self.clock()
        return SessionDetail(
            **session.model_dump(),
            tasks=tasks,
            duration_seconds=round((end - session.created_at).total_seconds(), 6),
        )

    async def cancel_session(self, session_id: str) -> SessionDetail:
        session = await self.lifecycle.get_session(session_id)
        now = self.clock()
        await move_session_or_raise(
            self.storage, session, SessionStatus.CANCELLED, finished_at=now, updated_at=now
        )
        self._end_run(session_id, "cancelled")
        await self._cancel_open_tasks(session_id, "session cancelled")
        log_operation("workflow.cancelled", {"sessionId": session_id}, level=logging.WARNING)
        return await self.session_detail(session_id)

    async def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        return await self.storage.list_dead_letters(offset=offset, limit=limit)

    async def redrive(self, task_id: str) -> TaskRun:
        """Give a dead-lettered task a fresh set of attempts and reopen its run."""
        letter = await self.storage.pop_dead_letter(task_id)
        if letter is None:
            raise NotFoundError(
                f"Task '{task_id}' is not in the dead-letter list", code="NOT_DEAD_LETTERED"
            )
        session = await self.lifecycle.get_session(letter.session_id)
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
                updated_at=self.clock(),
            )
            if self.telemetry is not None and session.trace_id:
                self.telemetry.start_run(
                    session.session_id, session.trace_id, None, session.workflow_id or ""
                )
        for task in await self.storage.session_tasks(session.session_id):
            if task.status == S.CANCELLED and task.cancel_reason == _SESSION_FAILED:
                await move_task(
                    self.storage, task.task_id, S.PENDING, cancel_reason=None, agent_id=None
                )
        task = await self.get_task(task_id)
        tasks = await self.storage.session_tasks(session.session_id)
        await self.enqueue_task(
            task.model_copy(update={"delay_seconds": 0}),
            _substitution_context(session, tasks),
            from_status=frozenset({S.FAILED}),
            uncharged_attempts=task.attempts,
            error=None,
            finished_at=None,
        )
        log_operation("task.redriven", {"sessionId": session.session_id, "taskId": task_id})
        await self.advance(session.session_id)
        return await self.get_task(task_id)


def _satisfied_steps(tasks: list[TaskRun]) -> set[str]:
    """Steps that completed, or failed but whose fallback completed."""
    satisfied = {t.step_id for t in tasks if t.status == S.COMPLETED}
    return satisfied | {t.fallback_for for t in tasks if t.fallback_for and t.status == S.COMPLETED}


def _substitution_context(session: Session, tasks: list[TaskRun]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for t in tasks:
        results.setdefault(t.step_id, {"status": t.status.value, "result": t.result})
    for t in tasks:  # a completed fallback stands in for the step it replaced
        if t.fallback_for and t.status == S.COMPLETED:
            results[t.fallback_for] = {"status": "completed", "result": t.result}
    return {
        "input": session.initial_payload,
        "tasks": results,
        "session": {"id": session.session_id, "agentId": session.agent_id},
    }


def _update_last(history: list[TaskAttempt], **changes: Any) -> list[TaskAttempt]:
    if not history:
        return history
    return [*history[:-1], history[-1].model_copy(update=changes)]
