"""Agents' reported lifecycle state: AgentKit's state reports, history, Ops-Core's own changes.

A report may arrive before its agent is registered (AgentKit's example agent reports ``idle``
tens of milliseconds before AgentKit's registration webhook reaches us, and never again): it is
held, bounded in count and age, answered ``202 {"status": "pending"}``, and applied when the
registration arrives.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Protocol

from ..config import Settings
from ..errors import ConflictError, NotFoundError, UnprocessableError
from ..models import (
    Agent,
    CurrentState,
    Page,
    StateAccepted,
    StateRecord,
    StateReport,
    as_utc,
    utcnow,
)
from ..observe.logs import log_operation
from ..storage.base import Storage
from ..storage.report_and_task import ReportPlan, ReportWritten
from .registry import AgentRegistry

OFFLINE = "offline"
# Reported states that say "I am done with what I had": they end a running task. Which states
# take new work is a setting (OPSCORE_DISPATCHABLE_STATES).
IDLE_STATES = frozenset({"idle", "finished"})

StateListener = Callable[[Agent, StateRecord], Awaitable[None]]


class ReportFollower(ReportPlan, Protocol):
    """What a report means for the tasks of its agent (the workflow room's
    ``AgentReports``): the change to its task that is written with the report
    (``ReportPlan``), and the rest, told after every applied report."""

    async def followed(self, agent: Agent, record: StateRecord, written: ReportWritten) -> None:
        """The report was written, and ``written.task`` changed with it (or none was)."""
        ...


# told when an agent goes offline or comes back: ("agent.offline" | "agent.back", agent, why)
PresenceListener = Callable[[str, Agent, str], Awaitable[None]]


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
        # told after the state listeners; its plan is written with each agent's own report
        self.follower: ReportFollower | None = None
        self.presence_listeners: list[PresenceListener] = []
        registry.registered_listeners.append(self.apply_held_report)

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
        now = self.clock()
        stamp = as_utc(report.timestamp)
        skew = self.settings.max_clock_skew_seconds
        if stamp > now + timedelta(seconds=skew):
            # accepted, it would make every later genuine report of the agent look out of order
            raise UnprocessableError(
                f"State report timestamp {stamp.isoformat()} is more than {skew:g}s ahead of "
                "Ops-Core's clock; check the agent's clock (OPSCORE_MAX_CLOCK_SKEW_SECONDS)",
                code="TIMESTAMP_IN_FUTURE",
            )
        record = StateRecord(
            agent_id=agent_id,
            state=report.state,
            timestamp=stamp,
            details=report.details,
            received_at=now,
        )
        try:
            written = await self._write_report(record)
        except NotFoundError as exc:
            if exc.code != "AGENT_NOT_FOUND" or not await self._hold(record):
                raise
            return StateAccepted(
                status="pending",
                message=(
                    f"Agent '{agent_id}' is not registered yet; the report is kept for "
                    f"{self.settings.pending_report_ttl:g}s and applied when it registers"
                ),
                agent_id=agent_id,
                state=record.state,
                timestamp=record.timestamp,
            )
        agent, duplicate = written.agent, written.duplicate
        if not duplicate:
            # The access line already records the request (with agentId); this one is for
            # debugging, so the hot path writes one log line, not two.
            log_operation(
                "agent.state",
                {"agentId": agent_id, "state": record.state},
                logger="opscore.state",
                level=logging.DEBUG,
            )
            await self._notify(agent, record, written)
            if (record.state == OFFLINE) != (agent.offline_since is not None):
                await self._presence(agent, record.state, "reported by the agent")
        return StateAccepted(
            message="State update accepted" if not duplicate else "Duplicate report ignored",
            agent_id=agent_id,
            state=agent.state or record.state,
            timestamp=record.timestamp,
            duplicate=duplicate,
        )

    async def _write_report(self, record: StateRecord) -> ReportWritten:
        """The report, with the change it makes to its agent's task in the same write when
        the follower plans one (``Storage.record_report``)."""
        limit = self.settings.state_history_limit
        if self.follower is not None:
            return await self.storage.record_report(record, history_limit=limit, plan=self.follower)
        agent, duplicate = await self.storage.record_state(record, history_limit=limit)
        return ReportWritten(agent, duplicate)

    async def _hold(self, record: StateRecord) -> bool:
        """Keep a report for an agent that is not registered yet; False when full."""
        held = await self.storage.hold_report(record, max_agents=self.settings.pending_reports_max)
        if not held:
            return False
        log_operation(
            "agent.report_held",
            {"agentId": record.agent_id, "state": record.state},
            logger="opscore.state",
        )
        # registered in between our miss and the hold: apply it now rather than never
        agent = await self.storage.get_agent(record.agent_id)
        if agent is not None:
            await self.apply_held_report(agent)
        return True

    async def apply_held_report(self, agent: Agent) -> None:
        """A newly registered agent: apply the report that arrived before its registration."""
        record = await self.storage.take_held_report(agent.agent_id)
        if record is None:
            return
        try:
            updated, duplicate = await self.storage.record_state(
                record, history_limit=self.settings.state_history_limit
            )
        except (NotFoundError, ConflictError):
            return  # deregistered again, or a newer report already applied
        log_operation(
            "agent.report_applied",
            {"agentId": agent.agent_id, "state": record.state},
            logger="opscore.state",
        )
        if not duplicate:
            await self._notify(updated, record, ReportWritten(updated, False))

    async def drop_held_reports(self, now: datetime) -> int:
        """Forget held reports older than ``pending_report_ttl``: their agents never came."""
        cutoff = now - timedelta(seconds=self.settings.pending_report_ttl)
        dropped = await self.storage.drop_held_reports(received_before=cutoff)
        for record in dropped:
            log_operation(
                "agent.report_dropped",
                {
                    "agentId": record.agent_id,
                    "state": record.state,
                    "reason": "the agent did not register in time",
                },
                logger="opscore.state",
                level=logging.WARNING,
            )
        return len(dropped)

    async def heartbeat(self, agent_id: str) -> Agent:
        """The agent is alive (``POST .../heartbeat``): seen now; available again if offline."""
        agent = await self.storage.update_agent(agent_id, {"last_seen": self.clock()})
        if agent is None:
            raise NotFoundError(f"Agent '{agent_id}' is not registered", code="AGENT_NOT_FOUND")
        if agent.state == OFFLINE:
            await self.mark_reachable(agent, "heartbeat")
            agent = await self.registry.get_agent(agent_id)
        return agent

    async def mark_offline(self, agent: Agent, reason: str) -> None:
        """Ops-Core's own state change (liveness); recorded in history with its reason."""
        await self._record_own(agent, OFFLINE, reason, event="agent.offline", level=30)

    async def mark_reachable(self, agent: Agent, reason: str) -> None:
        """An offline agent answered a probe or a heartbeat: available (``idle``) again."""
        await self._record_own(agent, "idle", reason, event="agent.back", level=20)

    async def _record_own(
        self, agent: Agent, state: str, reason: str, *, event: str, level: int
    ) -> None:
        now = self.clock()
        # Just after the last report, by the agent's own clock: its next report, whatever the
        # skew between our clocks, is then newer and accepted.
        try:
            stamp = (
                agent.state_timestamp + timedelta(microseconds=1) if agent.state_timestamp else now
            )
        except OverflowError:  # a stored timestamp at the end of time (from before the skew check)
            stamp = now
        record = StateRecord(
            agent_id=agent.agent_id,
            state=state,
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
        # keep last_seen as it was: the agent has not reported
        await self.storage.update_agent(agent.agent_id, {"last_seen": agent.last_seen})
        if not duplicate:
            log_operation(event, {"agentId": agent.agent_id, "reason": reason}, level=level)
            await self._notify(updated, record, ReportWritten(updated, False))
            if (state == OFFLINE) != (updated.offline_since is not None):
                await self._presence(updated, state, reason)

    async def _presence(self, agent: Agent, state: str, reason: str) -> None:
        """The agent went offline, or came back: remember since when, and tell listeners."""
        gone = state == OFFLINE
        since = self.clock() if gone else None
        changed = await self.storage.update_agent(agent.agent_id, {"offline_since": since})
        if changed is None:
            return
        event = "agent.offline" if gone else "agent.back"
        for listener in self.presence_listeners:
            await listener(event, changed, reason)

    async def _notify(self, agent: Agent, record: StateRecord, written: ReportWritten) -> None:
        for listener in self.state_listeners:
            await listener(agent, record)
        if self.follower is not None:
            await self.follower.followed(agent, record, written)

    async def current_state(self, agent_id: str) -> CurrentState:
        """The agent's last state (all null before its first report), or AGENT_NOT_FOUND."""
        agent = await self.registry.get_agent(agent_id)
        if agent.state is None or agent.state_timestamp is None:
            return CurrentState(agent_id=agent_id)
        return CurrentState(
            agent_id=agent_id,
            state=agent.state,
            timestamp=agent.state_timestamp,
            details=agent.state_details,
            received_at=agent.last_seen,
        )

    async def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        """The agent's bounded state history, newest first: its newest
        ``state_history_limit`` reports. Stores trim a history in steps, so one may hold a
        few more between two steps (``storage/history_trims.py``); they are not shown."""
        await self.registry.get_agent(agent_id)
        kept = self.settings.state_history_limit
        shown = min(limit, kept - offset)
        # a page past what is kept still says how many there are: one record read, none shown
        page = await self.storage.state_history(agent_id, offset=offset, limit=max(shown, 1))
        return Page(
            items=page.items[: max(shown, 0)],
            total=min(page.total, kept),
            offset=offset,
            limit=limit,
        )
