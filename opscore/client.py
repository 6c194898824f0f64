"""Python SDK for Ops-Core: ``OpsCoreClient`` (sync) and ``AsyncOpsCoreClient`` over httpx.

Both share one request-building core (``_Endpoints``): every route is described once as a
``_Call`` and the two clients differ only in how they send it, so their method names and
arguments are identical. Results are the same pydantic models the service uses.

    from opscore.client import OpsCoreClient

    with OpsCoreClient() as ops:                      # OPSCORE_API_URL / OPSCORE_API_KEY
        ops.register_agent("summarizer", agent_id="sum-1", capabilities=["summarize"])
        run = ops.run_workflow("digest", {"topic": "agents"})
        session = ops.wait_for_session(run.session_id, timeout=60)

The async client has the same methods; await them (``await ops.get_agent("sum-1")``).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Literal, TypeVar, cast

import httpx
from pydantic import BaseModel, TypeAdapter
from pydantic.alias_generators import to_camel as _camel

from . import __version__
from .models import (
    Agent,
    Budget,
    CapabilityLimit,
    CurrentState,
    DeadLetter,
    Delivery,
    HeartbeatAccepted,
    LeaseRenewed,
    Page,
    PurgeResult,
    RunAccepted,
    RunTimeline,
    Schedule,
    Session,
    SessionDetail,
    StateAccepted,
    StateRecord,
    Subscription,
    SubscriptionCreated,
    TaskRun,
    UsageReport,
    UsageTotals,
    WaitingStep,
    WorkerClaimed,
    WorkflowDefinition,
    WorkflowTemplate,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncOpsCoreClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "OpsCoreClient",
    "PermissionDeniedError",
    "RateLimitError",
    "UnprocessableEntityError",
]

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_SESSION = frozenset({"completed", "failed", "cancelled"})
T = TypeVar("T")


# --- errors -----------------------------------------------------------------------------------
class APIError(Exception):
    """Base of every SDK error: carries the status, stable code, message and request id."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.details = details

    def __str__(self) -> str:
        if self.status_code:
            return f"{self.status_code} {self.code}: {self.message}"
        return f"{self.code}: {self.message}" if self.code else self.message


class APIConnectionError(APIError):
    """The server could not be reached."""


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class APIStatusError(APIError):
    """The server answered with an error status."""


class BadRequestError(APIStatusError): ...


class AuthenticationError(APIStatusError): ...


class PermissionDeniedError(APIStatusError): ...


class NotFoundError(APIStatusError): ...


class ConflictError(APIStatusError): ...


class UnprocessableEntityError(APIStatusError): ...


class RateLimitError(APIStatusError): ...


class InternalServerError(APIStatusError): ...


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: BadRequestError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _error_from(response: httpx.Response) -> APIStatusError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or (body.get("detail") if isinstance(body, dict) else None)
    cls = _STATUS_ERRORS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    return cls(
        str(message or response.reason_phrase or "request failed"),
        status_code=response.status_code,
        code=error.get("code"),
        request_id=(body.get("requestId") if isinstance(body, dict) else None)
        or response.headers.get("x-request-id"),
        details=error.get("details"),
    )


# --- the shared core --------------------------------------------------------------------------
@dataclass
class _Call(Generic[T]):
    """One API call: what to send and how to read the answer."""

    method: str
    path: str
    result: Any = None  # a model/type to validate into, or None for raw JSON
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # instead of the client's (a long-poll waits longer)

    def parse(self, response: httpx.Response) -> T:
        """The answer as the call's result type (None for an empty answer, as 204 has)."""
        if response.status_code == 204 or not response.content:
            return cast(T, None)
        data = response.json()
        if self.result is None:
            return data
        return _adapter(self.result).validate_python(data)


@functools.cache
def _adapter(result_type: Any) -> TypeAdapter[Any]:
    return TypeAdapter(result_type)


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _dump(model: Any) -> Any:
    if isinstance(model, BaseModel):
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return model


class _Endpoints:
    """Every Ops-Core route, described once. ``_call`` sends (sync) or returns a coroutine."""

    def _call(self, call: _Call[Any]) -> Any:  # pragma: no cover - implemented by the clients
        raise NotImplementedError

    # --- system ---------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self._call(_Call("GET", "/health"))

    def ready(self) -> dict[str, Any]:
        return self._call(_Call("GET", "/ready"))

    # --- agents ---------------------------------------------------------------------------
    def register_agent(
        self,
        agent_name: str,
        *,
        agent_id: str | None = None,
        capabilities: list[str] | None = None,
        contact_endpoint: str | None = None,
        version: str = "0.0.0",
        metadata: dict[str, Any] | None = None,
        max_concurrency: int = 1,
        heartbeat_interval: float | None = None,
        delivery: Literal["push", "pull"] = "push",
    ) -> Agent:
        """Register an agent (idempotent for identical details). An agent that will report or
        call :meth:`heartbeat` regularly declares ``heartbeat_interval`` (seconds); one that
        does not is probed at its contact endpoint when silent (docs/liveness.md)."""
        body = _clean(
            {
                "agentId": agent_id,
                "agentName": agent_name,
                "capabilities": capabilities or [],
                "contactEndpoint": contact_endpoint,
                "version": version,
                "metadata": metadata or {},
                "maxConcurrency": max_concurrency,
                "heartbeatIntervalSeconds": heartbeat_interval,
                "delivery": delivery,
            }
        )
        return self._call(_Call("POST", "/v1/opscore/agents", Agent, json=body))

    def register_a2a_agent(
        self,
        card_url: str,
        *,
        agent_id: str | None = None,
        capabilities: list[str] | None = None,
        max_concurrency: int = 4,
        metadata: dict[str, Any] | None = None,
    ) -> Agent:
        """Register an A2A agent by its agent card (or its base URL); the card's skills
        become capabilities. Registering again from the same card refreshes it (docs/a2a.md)."""
        body = _clean(
            {
                "cardUrl": card_url,
                "agentId": agent_id,
                "capabilities": capabilities or [],
                "maxConcurrency": max_concurrency,
                "metadata": metadata or {},
            }
        )
        return self._call(_Call("POST", "/v1/opscore/agents/a2a", Agent, json=body))

    def list_agents(
        self,
        *,
        state: str | None = None,
        capability: str | None = None,
        offset: int = 0,
        limit: int = 50,
    ) -> Page[Agent]:
        params = _clean(
            {"state": state, "capability": capability, "offset": offset, "limit": limit}
        )
        return self._call(_Call("GET", "/v1/opscore/agents", Page[Agent], params=params))

    def get_agent(self, agent_id: str) -> Agent:
        return self._call(_Call("GET", f"/v1/opscore/agents/{agent_id}", Agent))

    def deregister_agent(self, agent_id: str) -> Agent:
        return self._call(_Call("DELETE", f"/v1/opscore/agents/{agent_id}", Agent))

    # --- state ----------------------------------------------------------------------------
    def report_state(
        self,
        agent_id: str,
        state: str,
        *,
        details: dict[str, Any] | None = None,
        timestamp: datetime | None = None,
    ) -> StateAccepted:
        """Report a state exactly as AgentKit's SDK does (timestamp defaults to now, UTC)."""
        body = {
            "agentId": agent_id,
            "timestamp": (timestamp or datetime.now(UTC)).isoformat(),
            "state": state,
            "details": details or {},
        }
        return self._call(
            _Call("POST", f"/v1/opscore/agent/{agent_id}/state", StateAccepted, json=body)
        )

    def get_state(self, agent_id: str) -> CurrentState:
        """The agent's last state; ``state`` is None until its first report."""
        return self._call(_Call("GET", f"/v1/opscore/agent/{agent_id}/state", CurrentState))

    def heartbeat(self, agent_id: str) -> HeartbeatAccepted:
        """Tell Ops-Core the agent is alive, without changing its state."""
        return self._call(
            _Call("POST", f"/v1/opscore/agent/{agent_id}/heartbeat", HeartbeatAccepted)
        )

    def state_history(
        self, agent_id: str, *, offset: int = 0, limit: int = 50
    ) -> Page[StateRecord]:
        return self._call(
            _Call(
                "GET",
                f"/v1/opscore/agent/{agent_id}/state/history",
                Page[StateRecord],
                params={"offset": offset, "limit": limit},
            )
        )

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

    # --- events out ------------------------------------------------------------------------
    def create_subscription(
        self,
        url: str,
        events: list[str],
        *,
        description: str = "",
        secret: str | None = None,
    ) -> SubscriptionCreated:
        """Subscribe a URL to events; the answer holds the signing secret (shown once)."""
        body = _clean({"url": url, "events": events, "description": description, "secret": secret})
        return self._call(
            _Call("POST", "/v1/opscore/subscriptions", SubscriptionCreated, json=body)
        )

    def list_subscriptions(self, *, offset: int = 0, limit: int = 50) -> Page[Subscription]:
        params = {"offset": offset, "limit": limit}
        return self._call(
            _Call("GET", "/v1/opscore/subscriptions", Page[Subscription], params=params)
        )

    def get_subscription(self, subscription_id: str) -> Subscription:
        return self._call(
            _Call("GET", f"/v1/opscore/subscriptions/{subscription_id}", Subscription)
        )

    def update_subscription(
        self,
        subscription_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        description: str | None = None,
        active: bool | None = None,
    ) -> Subscription:
        """Change what is given; ``active=False`` pauses the subscription."""
        body = _clean({"url": url, "events": events, "description": description, "active": active})
        return self._call(
            _Call("PATCH", f"/v1/opscore/subscriptions/{subscription_id}", Subscription, json=body)
        )

    def delete_subscription(self, subscription_id: str) -> None:
        return self._call(_Call("DELETE", f"/v1/opscore/subscriptions/{subscription_id}"))

    def list_deliveries(
        self, subscription_id: str, *, offset: int = 0, limit: int = 50
    ) -> Page[Delivery]:
        """A subscription's delivery log, newest first."""
        return self._call(
            _Call(
                "GET",
                f"/v1/opscore/subscriptions/{subscription_id}/deliveries",
                Page[Delivery],
                params={"offset": offset, "limit": limit},
            )
        )

    def redeliver(self, subscription_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again now, with fresh attempts."""
        path = f"/v1/opscore/subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver"
        return self._call(_Call("POST", path, Delivery))

    def ping_subscription(self, subscription_id: str) -> Delivery:
        """Queue a test event (type ``ping``) for one subscription."""
        return self._call(
            _Call("POST", f"/v1/opscore/subscriptions/{subscription_id}/ping", Delivery)
        )

    # --- schedules -------------------------------------------------------------------------
    def create_schedule(
        self,
        workflow_id: str,
        *,
        cron: str | None = None,
        interval_seconds: float | None = None,
        timezone: str | None = None,
        payload: dict[str, Any] | None = None,
        schedule_id: str | None = None,
        overlap: Literal["skip", "queue_one", "allow"] | None = None,
        catch_up: Literal["skip", "one", "all"] | None = None,
        version: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Schedule:
        """Run a template on a cron expression (read in ``timezone``) or every N seconds."""
        body = _clean(
            {
                "workflowId": workflow_id,
                "scheduleId": schedule_id,
                "cron": cron,
                "intervalSeconds": interval_seconds,
                "timezone": timezone,
                "payload": payload,
                "overlap": overlap,
                "catchUp": catch_up,
                "version": version,
                "metadata": metadata,
            }
        )
        return self._call(_Call("POST", "/v1/opscore/schedules", Schedule, json=body))

    def list_schedules(self, *, offset: int = 0, limit: int = 50) -> Page[Schedule]:
        params = {"offset": offset, "limit": limit}
        return self._call(_Call("GET", "/v1/opscore/schedules", Page[Schedule], params=params))

    def get_schedule(self, schedule_id: str) -> Schedule:
        return self._call(_Call("GET", f"/v1/opscore/schedules/{schedule_id}", Schedule))

    def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change fields by their Python names (cron, interval_seconds, timezone, payload,
        overlap, catch_up, version, metadata, paused)."""
        body = _clean({_camel(k): v for k, v in changes.items()})
        return self._call(
            _Call("PATCH", f"/v1/opscore/schedules/{schedule_id}", Schedule, json=body)
        )

    def pause_schedule(self, schedule_id: str) -> Schedule:
        return self._call(_Call("POST", f"/v1/opscore/schedules/{schedule_id}/pause", Schedule))

    def resume_schedule(self, schedule_id: str) -> Schedule:
        return self._call(_Call("POST", f"/v1/opscore/schedules/{schedule_id}/resume", Schedule))

    def trigger_schedule(self, schedule_id: str) -> RunAccepted:
        """One run now with the schedule's payload."""
        return self._call(
            _Call("POST", f"/v1/opscore/schedules/{schedule_id}/trigger", RunAccepted)
        )

    def delete_schedule(self, schedule_id: str) -> None:
        return self._call(_Call("DELETE", f"/v1/opscore/schedules/{schedule_id}"))

    # --- pull workers (opscore.worker drives these) ---------------------------------------
    def claim_tasks(
        self, agent_id: str, *, wait_seconds: float = 20, max_tasks: int = 1
    ) -> WorkerClaimed:
        """Long-poll for tasks dispatched to this pull worker (none after ``wait_seconds``)."""
        return self._call(
            _Call(
                "POST",
                f"/v1/opscore/workers/{agent_id}/claim",
                WorkerClaimed,
                json={"waitSeconds": wait_seconds, "maxTasks": max_tasks},
                timeout=wait_seconds + 10,
            )
        )

    def heartbeat_task(self, agent_id: str, task_id: str) -> LeaseRenewed:
        """Keep the lease; ConflictError (LEASE_LOST) when the task is no longer ours."""
        path = f"/v1/opscore/workers/{agent_id}/tasks/{task_id}/heartbeat"
        return self._call(_Call("POST", path, LeaseRenewed))

    def complete_claimed(
        self,
        agent_id: str,
        task_id: str,
        result: Any = None,
        *,
        usage: dict[str, Any] | None = None,
    ) -> TaskRun:
        path = f"/v1/opscore/workers/{agent_id}/tasks/{task_id}/complete"
        body = _clean({"result": result, "usage": usage})
        return self._call(_Call("POST", path, TaskRun, json=body))

    def fail_claimed(self, agent_id: str, task_id: str, error: str) -> TaskRun:
        path = f"/v1/opscore/workers/{agent_id}/tasks/{task_id}/fail"
        return self._call(_Call("POST", path, TaskRun, json={"error": error[:4000]}))

    def release_claimed(self, agent_id: str, task_id: str) -> TaskRun:
        """Hand a claimed task back (shutting down): queued again, not charged."""
        path = f"/v1/opscore/workers/{agent_id}/tasks/{task_id}/release"
        return self._call(_Call("POST", path, TaskRun))

    # --- usage and budgets -----------------------------------------------------------------
    def get_usage(self, scope: Literal["workflow", "agent"], ident: str) -> UsageReport:
        """What a workflow's or an agent's tasks reported spending, in all and today."""
        return self._call(_Call("GET", f"/v1/opscore/usage/{scope}/{ident}", UsageReport))

    def run_usage(self, session_id: str) -> UsageTotals:
        return self._call(_Call("GET", f"/v1/opscore/sessions/{session_id}/usage", UsageTotals))

    def set_budget(
        self,
        scope: Literal["workflow", "agent"],
        ident: str,
        *,
        per: Literal["run", "day"] = "day",
        max_cost_usd: float | None = None,
        max_tokens: int | None = None,
        on_exceed: Literal["wait", "fail"] = "wait",
    ) -> Budget:
        """Stop dispatch for a workflow (per run or day) or an agent (per day) once spent."""
        body = _clean(
            {
                "per": per,
                "maxCostUsd": max_cost_usd,
                "maxTokens": max_tokens,
                "onExceed": on_exceed,
            }
        )
        return self._call(_Call("PUT", f"/v1/opscore/budgets/{scope}/{ident}", Budget, json=body))

    def list_budgets(self) -> Page[Budget]:
        return self._call(_Call("GET", "/v1/opscore/budgets", Page[Budget]))

    def remove_budget(
        self, scope: Literal["workflow", "agent"], ident: str, per: Literal["run", "day"]
    ) -> None:
        return self._call(_Call("DELETE", f"/v1/opscore/budgets/{scope}/{ident}/{per}"))

    # --- concurrency limits ----------------------------------------------------------------
    def list_limits(self) -> Page[CapabilityLimit]:
        """Limited capabilities, each with how many of its tasks hold a slot now."""
        return self._call(_Call("GET", "/v1/opscore/limits", Page[CapabilityLimit]))

    def set_limit(self, capability: str, max_running: int) -> CapabilityLimit:
        """At most ``max_running`` tasks of the capability at once, across replicas."""
        return self._call(
            _Call(
                "PUT",
                f"/v1/opscore/limits/capabilities/{capability}",
                CapabilityLimit,
                json={"maxRunning": max_running},
            )
        )

    def remove_limit(self, capability: str) -> None:
        return self._call(_Call("DELETE", f"/v1/opscore/limits/capabilities/{capability}"))

    # --- logs -----------------------------------------------------------------------------
    def logs(
        self,
        *,
        level: str | None = None,
        logger: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        task_id: str | None = None,
        text: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        order: Literal["asc", "desc"] = "desc",
        offset: int = 0,
        limit: int = 100,
    ) -> Page[dict[str, Any]]:
        params = _log_params(level, logger, agent_id, session_id, task_id, text, since, until)
        params.update(order=order, offset=offset, limit=limit)
        return self._call(_Call("GET", "/v1/opscore/logs", Page[dict[str, Any]], params=params))


def _log_params(
    level: str | None,
    logger: str | None,
    agent_id: str | None,
    session_id: str | None,
    task_id: str | None,
    text: str | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    return _clean(
        {
            "level": level.upper() if level else None,
            "logger": logger,
            "agentId": agent_id,
            "sessionId": session_id,
            "taskId": task_id,
            "q": text,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        }
    )


def _sse_records(lines: list[str]) -> dict[str, Any] | None:
    data = [line[5:].lstrip() for line in lines if line.startswith("data:")]
    if not data:
        return None
    return json.loads("\n".join(data))


class _BaseClient(_Endpoints):
    """Configuration, headers, retry policy: everything but the sending."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout: float,
        max_retries: int,
    ) -> None:
        self.base_url = (base_url or os.environ.get("OPSCORE_API_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("OPSCORE_API_KEY")
        if not key:
            raise APIError(
                "No API key: pass api_key=... or set the OPSCORE_API_KEY environment variable"
            )
        self.api_key = key
        self.timeout = timeout
        self.max_retries = max_retries

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": f"opscore-python/{__version__}",
            "Accept": "application/json",
        }

    def _request(self, call: _Call[Any]) -> httpx.Request:
        return httpx.Request(
            call.method,
            self.base_url + call.path,
            params=call.params or None,
            json=call.json if call.content is None else None,
            content=call.content,
            headers={**self._headers(), **call.headers},
            extensions={"timeout": httpx.Timeout(call.timeout).as_dict()} if call.timeout else None,
        )

    def _retry_delay(self, attempt: int) -> float:
        return min(0.25 * (2**attempt), 4.0) * (0.75 + random.random() / 2)

    def _should_retry(self, attempt: int, response: httpx.Response | None) -> bool:
        """Retry only connection failures and 503, a bounded number of times."""
        if attempt >= self.max_retries:
            return False
        return response is None or response.status_code == 503

    def _wrap(self, exc: httpx.TransportError) -> APIConnectionError:
        """A transport failure, naming the URL it was trying (a wrong OPSCORE_API_URL is the
        usual cause)."""
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"Request to Ops-Core at {self.base_url} timed out: {exc}")
        return APIConnectionError(f"Cannot reach Ops-Core at {self.base_url}: {exc}")


class OpsCoreClient(_BaseClient):
    """Synchronous client. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, max_retries=max_retries)
        self._http = http_client or httpx.Client(timeout=timeout)

    def _call(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.send(self._request(call))
            except httpx.TransportError as exc:
                if not self._should_retry(attempt, None):
                    raise self._wrap(exc) from exc
            if response is not None and not self._should_retry(attempt, response):
                if response.is_error:
                    raise _error_from(response)
                return call.parse(response)
            time.sleep(self._retry_delay(attempt))
            attempt += 1

    def wait_for_session(
        self,
        session_id: str,
        *,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
        on_update: Callable[[SessionDetail], None] | None = None,
    ) -> SessionDetail:
        """Poll until the session is completed, failed or cancelled; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            session = self.get_session(session_id)
            if on_update is not None:
                on_update(session)
            if session.status in TERMINAL_SESSION:
                return session
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Session {session_id} still {session.status} after {timeout}s")
            time.sleep(poll_interval)

    def stream_logs(
        self, *, last_event_id: int | None = None, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Follow the live log stream (SSE); yields records until the caller stops."""
        params = _log_params(**{k: filters.get(k) for k in _LOG_FILTERS})
        headers = {**self._headers(), "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = httpx.Timeout(self.timeout, read=None)
        with self._http.stream(
            "GET",
            self.base_url + "/v1/opscore/logs/stream",
            params=params,
            headers=headers,
            timeout=timeout,
        ) as response:
            if response.is_error:
                response.read()
                raise _error_from(response)
            lines: list[str] = []
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                    continue
                record = _sse_records(lines)
                lines = []
                if record is not None:
                    yield record

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpsCoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncOpsCoreClient(_BaseClient):
    """Asynchronous client with the same methods as ``OpsCoreClient``; await them."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, max_retries=max_retries)
        self._http = http_client or httpx.AsyncClient(timeout=timeout)

    async def _call(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.send(self._request(call))
            except httpx.TransportError as exc:
                if not self._should_retry(attempt, None):
                    raise self._wrap(exc) from exc
            if response is not None and not self._should_retry(attempt, response):
                if response.is_error:
                    raise _error_from(response)
                return call.parse(response)
            await asyncio.sleep(self._retry_delay(attempt))
            attempt += 1

    async def wait_for_session(
        self,
        session_id: str,
        *,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
        on_update: Callable[[SessionDetail], None] | None = None,
    ) -> SessionDetail:
        """Poll until the session is completed, failed or cancelled; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            session = await self.get_session(session_id)  # type: ignore[misc]
            if on_update is not None:
                on_update(session)
            if session.status in TERMINAL_SESSION:
                return session
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Session {session_id} still {session.status} after {timeout}s")
            await asyncio.sleep(poll_interval)

    async def stream_logs(
        self, *, last_event_id: int | None = None, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Follow the live log stream (SSE); yields records until the caller stops."""
        params = _log_params(**{k: filters.get(k) for k in _LOG_FILTERS})
        headers = {**self._headers(), "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = httpx.Timeout(self.timeout, read=None)
        async with self._http.stream(
            "GET",
            self.base_url + "/v1/opscore/logs/stream",
            params=params,
            headers=headers,
            timeout=timeout,
        ) as response:
            if response.is_error:
                await response.aread()
                raise _error_from(response)
            lines: list[str] = []
            async for line in response.aiter_lines():
                if line:
                    lines.append(line)
                    continue
                record = _sse_records(lines)
                lines = []
                if record is not None:
                    yield record

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncOpsCoreClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_LOG_FILTERS = ("level", "logger", "agent_id", "session_id", "task_id", "text", "since", "until")
