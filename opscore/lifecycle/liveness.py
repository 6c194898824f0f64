"""Liveness: agents that have been silent for too long are marked offline."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..config import Settings
from ..storage.base import Storage
from .state import OFFLINE, AgentStates


class Liveness:
    """A sweep, run by the dispatcher's loop, that marks silent agents offline."""

    def __init__(self, storage: Storage, settings: Settings, states: AgentStates) -> None:
        self.storage = storage
        self.settings = settings
        self.states = states

    async def sweep(self, now: datetime) -> None:
        """Mark every agent not seen for ``agent_offline_after`` seconds offline."""
        after = self.settings.agent_offline_after
        cutoff = now - timedelta(seconds=after)
        for agent in await self.storage.stale_agents(seen_before=cutoff, exclude_state=OFFLINE):
            await self.states.mark_offline(agent, f"no report for {after:g}s")
