"""The SDK's routes for work: templates, runs, tasks, dead letters, approvals and signals."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Literal

from ..models import (
    DeadLetter,
    Page,
    PurgeResult,
    RunAccepted,
    RunTimeline,
    Session,
    SessionDetail,
    TaskRun,
    WaitingStep,
    WorkflowDefinition,
    WorkflowTemplate,
)
from .calls import _Call, _clean, _dump, _Sender


class _RunEndpoints(_Sender):
    """The routes of work: templates, runs and sessions, tasks and dead letters, approvals and
    signals."""

    # --- workflows ------------------------------------------------------------------------
    def create_workflow(
        self, definition: WorkflowDefinition | Mapping[str, Any] | str
    ) -> WorkflowTemplate:
        """Store a template: a model, a dict, or JSON/YAML text."""
        if isinstance(definition, str):
            return self._call(
                _Call(
                    "POST",
                    "/v1/opscore/workflows",
                    WorkflowTemplate,
                    content=definition.encode("utf-8"),
                    headers={"Content-Type": "application/yaml"},
                )
            )
        return self._call(
            _Call("POST", "/v1/opscore/workflows", WorkflowTemplate, json=_dump(definition))
        )

    def list_workflows(self, *, offset: int = 0, limit: int = 50) -> Page[WorkflowTemplate]:
        return self._call(
            _Call(
                "GET",
                "/v1/opscore/workflows",
                Page[WorkflowTemplate],
                params={"offset": offset, "limit": limit},
            )
        )

    def get_workflow(self, workflow_id: str, *, version: str | None = None) -> WorkflowTemplate:
        return self._call(
            _Call(
                "GET",
                f"/v1/opscore/workflows/{workflow_id}",
                WorkflowTemplate,
                params=_clean({"version": version}),
            )
        )

    def delete_workflow(self, workflow_id: str, *, version: str | None = None) -> None:
        return self._call(
            _Call(
                "DELETE",
                f"/v1/opscore/workflows/{workflow_id}",
                params=_clean({"version": version}),
            )
        )

    def run_workflow(
        self,
        workflow_id: str,
        payload: dict[str, Any] | None = None,
        *,
        agent_id: str | None = None,
        version: str | None = None,
        metadata: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RunAccepted:
        """Start a run of a stored template. An Idempotency-Key is generated when not given,
        so the SDK's own retries can never start a second run."""
        body = _clean(
            {
                "initialPayload": payload or {},
                "agentId": agent_id,
                "version": version,
                "metadata": metadata or {},
            }
        )
        return self._call(
            _Call(
                "POST",
                f"/v1/opscore/workflows/{workflow_id}/runs",
                RunAccepted,
                json=body,
                headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
            )
        )

    def trigger_workflow(
        self,
        agent_id: str,
        *,
        workflow_id: str | None = None,
        definition: WorkflowDefinition | Mapping[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> RunAccepted:
        """Run a stored (``workflow_id``) or inline (``definition``) workflow pinned to an agent."""
        body = _clean(
            {
                "workflowDefinitionId": workflow_id,
                "workflowDefinition": _dump(definition) if definition is not None else None,
                "initialPayload": payload or {},
            }
        )
        return self._call(
            _Call(
                "POST",
                f"/v1/opscore/agent/{agent_id}/workflow",
                RunAccepted,
                json=body,
                headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
            )
        )

    # --- sessions -------------------------------------------------------------------------
    def start_session(
        self,
        *,
        agent_id: str | None = None,
        name: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Session:
        body = _clean({"agentId": agent_id, "name": name, "metadata": metadata or {}})
        return self._call(_Call("POST", "/v1/opscore/sessions", Session, json=body))

    def update_session(
        self,
        session_id: str,
        *,
        status: str | None = None,
        metadata: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> Session:
        body = _clean({"status": status, "metadata": metadata, "error": error})
        return self._call(_Call("PATCH", f"/v1/opscore/sessions/{session_id}", Session, json=body))

    def list_sessions(
        self,
        *,
        status: str | None = None,
        workflow_id: str | None = None,
        agent_id: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[Session]:
        params = _clean(
            {
                "status": status,
                "workflowId": workflow_id,
                "agentId": agent_id,
                "offset": offset,
                "limit": limit,
            }
        )
        return self._call(_Call("GET", "/v1/opscore/sessions", Page[Session], params=params))

    def get_session(self, session_id: str) -> SessionDetail:
        return self._call(_Call("GET", f"/v1/opscore/sessions/{session_id}", SessionDetail))

    def cancel_session(self, session_id: str) -> SessionDetail:
        return self._call(_Call("POST", f"/v1/opscore/sessions/{session_id}/cancel", SessionDetail))

    def session_timeline(self, session_id: str) -> RunTimeline:
        """Everything that happened in a run (its tasks, attempts, agents' reports, logs and
        spans), oldest first."""
        return self._call(_Call("GET", f"/v1/opscore/sessions/{session_id}/timeline", RunTimeline))

    # --- tasks and dead letters -----------------------------------------------------------
    def get_task(self, task_id: str) -> TaskRun:
        return self._call(_Call("GET", f"/v1/opscore/tasks/{task_id}", TaskRun))

    def report_task_result(
        self,
        task_id: str,
        status: Literal["completed", "failed"],
        *,
        result: Any = None,
        error: str | None = None,
        agent_id: str | None = None,
    ) -> TaskRun:
        body = _clean({"status": status, "result": result, "error": error, "agentId": agent_id})
        return self._call(_Call("POST", f"/v1/opscore/tasks/{task_id}/result", TaskRun, json=body))

    def purge(
        self, *, older_than_seconds: float | None = None, keep: int | None = None
    ) -> PurgeResult:
        """Remove finished runs now (admin): older than the age given, or beyond ``keep``."""
        body = _clean({"olderThanSeconds": older_than_seconds, "keep": keep})
        return self._call(_Call("POST", "/v1/opscore/admin/purge", PurgeResult, json=body))

    def list_dead_letters(self, *, offset: int = 0, limit: int = 50) -> Page[DeadLetter]:
        return self._call(
            _Call(
                "GET",
                "/v1/opscore/dead-letters",
                Page[DeadLetter],
                params={"offset": offset, "limit": limit},
            )
        )

    def redrive(self, task_id: str) -> TaskRun:
        return self._call(_Call("POST", f"/v1/opscore/dead-letters/{task_id}/redrive", TaskRun))

    # --- approvals and signals ------------------------------------------------------------
    def list_waiting(
        self,
        *,
        kind: Literal["approval", "signal"] | None = None,
        session_id: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[WaitingStep]:
        """Steps waiting for a decision (approvals, signals), the longest-waiting first."""
        params = _clean({"kind": kind, "sessionId": session_id, "offset": offset, "limit": limit})
        return self._call(_Call("GET", "/v1/opscore/waiting", Page[WaitingStep], params=params))

    def approve(
        self, task_id: str, *, comment: str | None = None, payload: dict[str, Any] | None = None
    ) -> TaskRun:
        """Approve a waiting approval step (operator); the payload reaches later steps."""
        body = _clean({"comment": comment, "payload": payload})
        return self._call(_Call("POST", f"/v1/opscore/tasks/{task_id}/approve", TaskRun, json=body))

    def reject(
        self, task_id: str, *, comment: str | None = None, payload: dict[str, Any] | None = None
    ) -> TaskRun:
        """Reject a waiting approval step (operator)."""
        body = _clean({"comment": comment, "payload": payload})
        return self._call(_Call("POST", f"/v1/opscore/tasks/{task_id}/reject", TaskRun, json=body))

    def send_signal(
        self, session_id: str, name: str, *, payload: dict[str, Any] | None = None
    ) -> list[TaskRun]:
        """Send a named signal to a run; returns the steps it completed."""
        return self._call(
            _Call(
                "POST",
                f"/v1/opscore/sessions/{session_id}/signals/{name}",
                list[TaskRun],
                json={"payload": payload or {}},
            )
        )
