"""The fleet as a store last read it, parsed: so a read of every agent parses only those that
changed since the last one.

The dispatcher reads the available agents at each pass that has work (on the shared stores:
every agent record, from the store). Those records were parsed through the shared cache of
parsed records (``parsed.py``), which holds a few thousand records of every kind: past 8,192
agents (fewer once tasks take their share) each pass parsed every agent again. A read of
10,000 agents on Redis then took 170 ms of the event loop, at every pass; with this view,
an unchanged agent costs a dictionary lookup and a string comparison.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..models import Agent
from .parsed import PARSED


class FleetView:
    """Agent id -> (its record's JSON as last read, the parsed agent), as of the last read.

    Each read replaces the view, so it holds what that read found and no more: an agent
    deleted (by any replica), or no longer in the states read, is dropped; one that comes
    back has changed (its state at least), so it would be parsed again anyway. A store keeps
    one, for its reads of the fleet (on SQLite and PostgreSQL, of the available agents)."""

    def __init__(self) -> None:
        self._agents: dict[str, tuple[str, Agent]] = {}
        self.read = False  # whether a read has been seen: until then the size is unknown

    def __len__(self) -> int:
        """How many agents the last read found."""
        return len(self._agents)

    def agents(self, rows: Iterable[tuple[str, str]]) -> list[Agent]:
        """The agents of ``rows`` (id and JSON), parsed only where the JSON changed."""
        known = self._agents
        seen: dict[str, tuple[str, Agent]] = {}
        for agent_id, raw in rows:
            kept = known.get(agent_id)
            if kept is None or kept[0] != raw:
                kept = (raw, PARSED.load(Agent, raw))
            seen[agent_id] = kept
        self._agents = seen
        self.read = True
        return [agent for _, agent in seen.values()]
