"""The SDK's routes for the fleet: health, agents, their state, and pull workers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from ..models import (
    Agent,
    CurrentState,
    HeartbeatAccepted,
    LeaseRenewed,
    Page,
    StateAccepted,
    StateRecord,
    TaskRun,
    WorkerClaimed,
)
from .calls import _Call, _clean, _Sender


class _FleetEndpoints(_Sender):
    """The routes of the fleet: health, the agent registry, agents' state, pull workers."""

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
