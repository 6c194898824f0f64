"""Agents' reported lifecycle state: AgentKit's state reports, history, Ops-Core's own changes."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from ..config import Settings
from ..errors import ConflictError, NotFoundError, UnprocessableError
from ..models import Agent, Page, StateAccepted, StateRecord, StateReport, as_utc, utcnow
from ..observe.logs import log_operation
from ..storage.base import Storage
from .registry import AgentRegistry

OFFLINE = "offline"
# States in which an agent takes new work (if it also has a free slot).
AVAILABLE_STATES = frozenset({"idle", "finished"})

StateListener = Callable[[Agent, StateRecord], Awaitable[None]]


class AgentStates:
    """Applies state reports in order; the workflow engine and metrics listen to changes."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        registry: AgentRegistry,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.registry = registry
        self.clock = clock
        self.known_states = frozenset(settings.known_states) | {OFFLINE}
        self.state_listeners: list[StateListener] = []

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
        """The agent's last state, or NotFoundError (AGENT_NOT_FOUND, NO_STATE)."""
        agent = await self.registry.get_agent(agent_id)
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
        """The agent's bounded state history, newest first."""
        await self.registry.get_agent(agent_id)
        return await self.storage.state_history(agent_id, offset=offset, limit=limit)
