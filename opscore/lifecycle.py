"""Agents, their lifecycle state and ad-hoc sessions: service functions, no HTTP in here."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from .config import Settings
from .errors import ConflictError, NotFoundError, UnprocessableError
from .logging_config import log_operation
from .models import (
    Agent,
    AgentCreate,
    Page,
    Session,
    SessionCreate,
    SessionStatus,
    SessionUpdate,
    StateAccepted,
    StateRecord,
    StateReport,
    WebhookAgentDetails,
    as_utc,
    utcnow,
)
from .storage.base import Storage
from .transitions import move_session_or_raise

OFFLINE = "offline"
# States in which an agent takes new work (if it also has a free slot).
AVAILABLE_STATES = frozenset({"idle", "finished"})
_REGISTRATION_FIELDS = (
    "agent_name",
    "version",
    "capabilities",
    "contact_endpoint",
    "metadata",
    "max_concurrency",
)

StateListener = Callable[[Agent, StateRecord], Awaitable[None]]
AgentGoneListener = Callable[[Agent], Awaitable[None]]


class Lifecycle:
    """Registry, state reports and sessions; the workflow engine listens to state changes."""

    def __init__(
        self, storage: Storage, settings: Settings, clock: Callable[[], Any] = utcnow
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.known_states = frozenset(settings.known_states) | {OFFLINE}
        self.state_listeners: list[StateListener] = []
        self.gone_listeners: list[AgentGoneListener] = []

    # --- registry ---------------------------------------------------------------------------
    async def register_agent(self, data: AgentCreate) -> tuple[Agent, bool]:
        """Register a new agent. Returns (agent, created); repeating an identical
        registration returns the existing agent, a different one under the same id is 409."""
        now = self.clock()
        agent = Agent(
            **data.model_dump(exclude={"agent_id"}),
            agent_id=data.agent_id or str(uuid.uuid4()),
            last_seen=now,
            registered_at=now,
            updated_at=now,
        )
        existing = await self.storage.create_agent(agent)
        if existing is None:
            log_operation("agent.registered", {"agentId": agent.agent_id, "source": "api"})
            return agent, True
        if _registration(existing) == _registration(agent):
            return existing, False
        raise ConflictError(
            f"Agent '{agent.agent_id}' is already registered with different details",
            code="AGENT_EXISTS",
        )

    async def apply_webhook_registration(self, details: WebhookAgentDetails) -> Agent:
        """AgentKit's REGISTER: create or refresh the agent, keeping its state (idempotent)."""
        now = self.clock()
        fields = {
            "agent_name": details.agentName or details.agentId,
            "version": details.version,
            "capabilities": list(dict.fromkeys(details.capabilities)),
            "contact_endpoint": details.contactEndpoint,
            "metadata": details.metadata,
        }
        existing = await self.storage.get_agent(details.agentId)
        if existing is None:
            agent = Agent(
                agent_id=details.agentId,
                last_seen=now,
                registered_at=now,
                updated_at=now,
                source="webhook",
                **fields,
            )
            if await self.storage.create_agent(agent) is None:
                log_operation("agent.registered", {"agentId": agent.agent_id, "source": "webhook"})
                return agent
        updated = await self.storage.update_agent(details.agentId, {**fields, "updated_at": now})
        if updated is None:  # deleted in between: register afresh
            return await self.apply_webhook_registration(details)
        return updated

    async def get_agent(self, agent_id: str) -> Agent:
        agent = await self.storage.get_agent(agent_id)
        if agent is None:
            raise NotFoundError(f"Agent '{agent_id}' is not registered", code="AGENT_NOT_FOUND")
        return agent

    async def list_agents(
        self, *, state: str | None, capability: str | None, offset: int, limit: int
    ) -> Page[Agent]:
        return await self.storage.list_agents(
            state=state, capability=capability, offset=offset, limit=limit
        )

    async def deregister_agent(self, agent_id: str) -> Agent:
        """Remove an agent and its history; its in-flight tasks go back to the queue."""
        agent = await self.storage.delete_agent(agent_id)
        if agent is None:
            raise NotFoundError(f"Agent '{agent_id}' is not registered", code="AGENT_NOT_FOUND")
        log_operation("agent.deregistered", {"agentId": agent_id})
        for listener in self.gone_listeners:
            await listener(agent)
        return agent

    # --- state ------------------------------------------------------------------------------
    async def report_state(self, agent_id: str, report: StateReport) -> StateAccepted:
        """Apply an AgentKit state report; replays are accepted and change nothing."""
        if report.agentId != agent_id:
            raise UnprocessableError(
                f"Body agentId '{report.agentId}' does not match path agentId '{agent_id}'",
                code="AGENT_ID_MISMATCH",
            )
        if report.state not in self.known_states:
            raise UnprocessableError(
                f"Unknown state '{report.state}'; known states: {sorted(self.known_states)}",
                code="UNKNOWN_STATE",
            )
        record = StateRecord(
            agent_id=agent_id,
            state=report.state,
            timestamp=as_utc(report.timestamp),
            details=report.details,
            received_at=self.clock(),
        )
        agent, duplicate = await self.storage.record_state(
            record, history_limit=self.settings.state_history_limit
        )
        if not duplicate:
            # The access line already records the request (with agentId); this one is for
            # debugging, so the hot path writes one log line, not two.
            log_operation(
                "agent.state",
                {"agentId": agent_id, "state": record.state},
                logger="opscore.state",
                level=logging.DEBUG,
            )
            await self._notify(agent, record)
        return StateAccepted(
            message="State update accepted" if not duplicate else "Duplicate report ignored",
            agent_id=agent_id,
            state=agent.state or record.state,
            timestamp=record.timestamp,
            duplicate=duplicate,
        )

    async def mark_offline(self, agent: Agent, reason: str) -> None:
        """Ops-Core's own state change (liveness); recorded in history with its reason."""
        now = self.clock()
        # Just after the last report, by the agent's own clock: its next report, whatever the
        # skew between our clocks, is then newer and accepted.
        stamp = agent.state_timestamp + timedelta(microseconds=1) if agent.state_timestamp else now
        record = StateRecord(
            agent_id=agent.agent_id,
            state=OFFLINE,
            timestamp=stamp,
            details={"reason": reason},
            received_at=now,
            reason=reason,
        )
        try:
            updated, duplicate = await self.storage.record_state(
                record, history_limit=self.settings.state_history_limit
            )
        except (NotFoundError, ConflictError):
            return  # deregistered or reported again meanwhile: nothing to do
        # keep last_seen as it was: the agent has not been seen
        await self.storage.update_agent(agent.agent_id, {"last_seen": agent.last_seen})
        if not duplicate:
            log_operation("agent.offline", {"agentId": agent.agent_id, "reason": reason}, level=30)
            await self._notify(updated, record)

    async def _notify(self, agent: Agent, record: StateRecord) -> None:
        for listener in self.state_listeners:
            await listener(agent, record)

    async def current_state(self, agent_id: str) -> StateRecord:
        agent = await self.get_agent(agent_id)
        if agent.state is None or agent.state_timestamp is None:
            raise NotFoundError(f"Agent '{agent_id}' has not reported a state yet", code="NO_STATE")
        return StateRecord(
            agent_id=agent_id,
            state=agent.state,
            timestamp=agent.state_timestamp,
            details=agent.state_details,
            received_at=agent.last_seen,
        )

    async def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        await self.get_agent(agent_id)
        return await self.storage.state_history(agent_id, offset=offset, limit=limit)

    # --- ad-hoc sessions --------------------------------------------------------------------
    async def start_session(self, data: SessionCreate) -> Session:
        if data.agent_id is not None:
            await self.get_agent(data.agent_id)
        now = self.clock()
        session = Session(
            session_id=str(uuid.uuid4()),
            kind="adhoc",
            name=data.name,
            agent_id=data.agent_id,
            metadata=data.metadata,
            created_at=now,
            updated_at=now,
        )
        await self.storage.save_session(session)
        log_operation(
            "session.started", {"sessionId": session.session_id, "agentId": data.agent_id}
        )
        return session

    async def get_session(self, session_id: str) -> Session:
        session = await self.storage.get_session(session_id)
        if session is None:
            raise NotFoundError(f"Session '{session_id}' not found", code="SESSION_NOT_FOUND")
        return session

    async def list_sessions(
        self,
        *,
        status: str | None,
        workflow_id: str | None,
        agent_id: str | None,
        offset: int,
        limit: int,
    ) -> Page[Session]:
        return await self.storage.list_sessions(
            status=status, workflow_id=workflow_id, agent_id=agent_id, offset=offset, limit=limit
        )

    async def update_session(self, session_id: str, data: SessionUpdate) -> Session:
        """Change an ad-hoc session's metadata or status (workflow runs move by themselves)."""
        session = await self.get_session(session_id)
        now = self.clock()
        changes: dict[str, Any] = {"updated_at": now}
        if data.metadata is not None:
            changes["metadata"] = {**session.metadata, **data.metadata}
        if data.error is not None:
            changes["error"] = data.error
        if data.status is None or data.status == session.status:
            updated = await self.storage.update_session(session_id, changes)
            return updated or session
        if session.kind == "workflow":
            raise ConflictError(
                "A workflow run's status follows its tasks; use POST .../cancel to stop it",
                code="ILLEGAL_TRANSITION",
            )
        if data.status != SessionStatus.RUNNING:
            changes["finished_at"] = now
        return await move_session_or_raise(self.storage, session, data.status, **changes)


def _registration(agent: Agent) -> dict[str, Any]:
    return agent.model_dump(include=set(_REGISTRATION_FIELDS))
