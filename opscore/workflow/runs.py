"""Runs: starting a template as a session of task runs, reading a run, cancelling it."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from ..config import Settings
from ..errors import UnprocessableError
from ..lifecycle.registry import AgentRegistry
from ..models import (
    RunAccepted,
    Session,
    SessionDetail,
    SessionStatus,
    TaskRun,
    WorkflowDefinition,
)
from ..observe.logs import log_operation
from ..observe.tracing import current_span, new_trace_id
from .engine import WorkflowEngine
from .first_steps import first_steps_queued
from .next_steps import carried_shapes
from .substitution import SubstitutionTooLargeError, substitute
from .templates import dependencies, validate_definition
from .transitions import move_session_or_raise


class RunService:
    """Starts runs (idempotently), and shows or cancels them."""

    def __init__(self, engine: WorkflowEngine, registry: AgentRegistry) -> None:
        self.engine = engine
        self.storage = engine.storage
        self.settings = engine.settings
        self.registry = registry
        # admits queued runs of a limited workflow (set by assembly: admissions.RunAdmissions)
        self.admit: Callable[[str], Awaitable[None]] = _admit_nothing

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
        engine = self.engine
        validate_definition(definition, max_tasks=self.settings.max_template_tasks)
        pinned_capabilities: frozenset[str] | None = None
        if agent_id is not None:
            pinned_capabilities = frozenset((await self.registry.get_agent(agent_id)).capabilities)
        session_id = str(uuid.uuid4())
        if idempotency_key:
            # the key maps to "<session id> <fingerprint of the request>": the same key on a
            # different request is refused instead of silently answering with the first run
            fingerprint = _fingerprint(definition, payload, agent_id, metadata)
            remembered = await self.storage.remember_idempotency_key(
                idempotency_key,
                f"{session_id} {fingerprint}",
                now=engine.clock(),
                ttl=self.settings.idempotency_ttl,
            )
            if remembered is not None:
                earlier, _, earlier_print = remembered.partition(" ")
                if earlier_print and earlier_print != fingerprint:
                    raise UnprocessableError(
                        "This Idempotency-Key was used for a different request (another "
                        "workflow, payload or agent); use a new key for a new run",
                        code="IDEMPOTENCY_KEY_REUSED",
                    )
                first = await self.storage.get_session(earlier)
                return RunAccepted(
                    message="Idempotency-Key seen before: returning the original run",
                    session_id=earlier,
                    workflow_id=first.workflow_id if first and first.workflow_id else definition.id,
                    duplicate=True,
                )
        _check_sizes(definition, payload, session_id, agent_id, self.settings)
        now = engine.clock()
        tasks = self._build_tasks(definition, session_id, agent_id, pinned_capabilities, now)
        request_span = current_span.get()
        if request_span is not None:
            request_span.attributes["keep"] = True
        trace_id = trace_id or (request_span.trace_id if request_span else new_trace_id())
        if engine.telemetry is not None:
            engine.telemetry.start_run(
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
            run_limit=definition.max_concurrent_runs,
            # a limited workflow's run waits for a slot (admissions.py)
            status=SessionStatus.QUEUED
            if definition.max_concurrent_runs
            else SessionStatus.RUNNING,
            created_at=now,
            updated_at=now,
        )
        tasks = [t.model_copy(update={"trace_id": trace_id}) for t in tasks]
        queued: list[str] = []
        if session.status == SessionStatus.RUNNING:  # its first steps go in the same write
            limit = self.settings.max_task_parameters_bytes
            tasks, queued = first_steps_queued(session, tasks, now, parameter_limit=limit)
        await self.storage.save_run(session, tasks, queued=queued)
        log_operation(
            "workflow.started",
            {"sessionId": session_id, "workflowId": definition.id, "agentId": agent_id},
        )
        if session.status == SessionStatus.QUEUED:
            await self.admit(definition.id)
        else:
            for task in tasks:
                if task.task_id in queued:  # as enqueue_task tells of each
                    engine.observe("queued", task)
            if queued:
                engine.notify_dispatcher(capacity=False, queued=True)
            await engine.advance(session_id, known=(session, tasks))  # what is left to start
        return RunAccepted(
            message="Workflow run accepted", session_id=session_id, workflow_id=definition.id
        )

    def _build_tasks(
        self,
        definition: WorkflowDefinition,
        session_id: str,
        pinned: str | None,
        pinned_capabilities: frozenset[str] | None,
        now: datetime,
    ) -> list[TaskRun]:
        """Task runs for a new session, each with what its completion alone does to the run
        (``next_steps.carried_shapes``). In a run pinned to an agent, a task with ``target:
        auto`` goes to the pinned agent unless it names a capability that agent lacks; then
        any available agent with the capability takes it (docs/tutorial.md, pinned runs)."""
        deps = dependencies(definition)
        fallback_for = {
            t.fallback_task_id: t.task_id for t in definition.tasks if t.fallback_task_id
        }
        settings = self.settings
        runs = []
        for t in definition.tasks:
            if t.target == "agent" or (t.target == "auto" and t.agent_id):
                target_agent = t.agent_id
            elif t.target == "workflow_agent" or (
                t.target == "auto" and pinned and _can_do(t.agent_capability, pinned_capabilities)
            ):
                target_agent = pinned
            else:
                target_agent = None
            runs.append(
                TaskRun(
                    task_id=f"task-{uuid.uuid4().hex}",
                    session_id=session_id,
                    step_id=t.task_id,
                    workflow_id=definition.id,
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
                    kind=t.kind,
                    when=t.when,
                    wait=t.wait,
                    created_at=now,
                )
            )
        return carried_shapes(runs)

    async def get_task(self, task_id: str) -> TaskRun:
        """One task run, or NotFoundError (TASK_NOT_FOUND)."""
        return await self.engine.get_task(task_id)

    async def session_detail(self, session_id: str) -> SessionDetail:
        """The session with its task runs and its duration so far."""
        session = await self.engine.get_session(session_id)
        tasks = await self.storage.session_tasks(session_id)
        end = session.finished_at or self.engine.clock()
        return SessionDetail(
            **session.model_dump(),
            tasks=tasks,
            duration_seconds=round((end - session.created_at).total_seconds(), 6),
        )

    async def cancel_session(self, session_id: str) -> SessionDetail:
        """Cancel a running session and its open tasks; a finished one is 409."""
        session = await self.engine.get_session(session_id)
        now = self.engine.clock()
        cancelled = await move_session_or_raise(
            self.storage, session, SessionStatus.CANCELLED, finished_at=now, updated_at=now
        )
        await self.engine.run_ended(cancelled, "cancelled")
        await self.engine.cancel_open_tasks(session_id, "session cancelled")
        log_operation("workflow.cancelled", {"sessionId": session_id}, level=logging.WARNING)
        return await self.session_detail(session_id)


async def _admit_nothing(workflow_id: str) -> None:
    return None


def _can_do(capability: str | None, capabilities: frozenset[str] | None) -> bool:
    return capability is None or capabilities is None or capability in capabilities


def _check_sizes(
    definition: WorkflowDefinition,
    payload: dict[str, Any],
    session_id: str,
    agent_id: str | None,
    settings: Settings,
) -> None:
    """Refuse (422 SUBSTITUTION_TOO_LARGE) a run whose parameters, with its input substituted,
    exceed the per-task or per-run limit, before anything is stored. Results of earlier tasks
    are not known yet; a task they would blow up fails when it is queued."""
    context = {
        "input": payload,
        "tasks": {},
        "session": {"id": session_id, "agentId": agent_id},
    }
    left = settings.max_run_parameters_bytes
    for t in definition.tasks:
        resolved = substitute(t.parameters, context, limit=settings.max_task_parameters_bytes)
        left -= len(json.dumps(resolved, separators=(",", ":"), default=str))
        if left < 0:
            raise SubstitutionTooLargeError(
                f"The run's task parameters would exceed {settings.max_run_parameters_bytes} "
                "bytes together after substitution (OPSCORE_MAX_RUN_PARAMETERS_BYTES)"
            )


def _fingerprint(
    definition: WorkflowDefinition,
    payload: dict[str, Any],
    agent_id: str | None,
    metadata: dict[str, Any] | None,
) -> str:
    """What makes two triggers the same request, hashed."""
    body = {
        "workflow": definition.model_dump(mode="json"),
        "payload": payload,
        "agentId": agent_id,
        "metadata": metadata or {},
    }
    encoded = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()
