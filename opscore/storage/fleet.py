"""The fleet as a store last read it, parsed: so a read of every agent parses only those that
changed since the last one.

The dispatcher reads the available agents at each pass that has work. On the shared stores a
read may bring only the agents that changed since the last one (Redis: the keys its
invalidations named, ``redis/fleet_feed.py``; PostgreSQL: the rows written since the last
read's snapshot): ``changed`` applies those to the view, which then answers for the rest. Those records were parsed through the shared cache of
parsed records (``parsed.py``), which holds a few thousand records of every kind: past 8,192
agents (fewer once tasks take their share) each pass parsed every agent again. A read of
10,000 agents on Redis then took 170 ms of the event loop, at every pass; with this view,
an unchanged agent costs a dictionary lookup and a string comparison.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from ..models import Agent
from .parsed import PARSED


def _free(agent: Agent, states: frozenset[str]) -> bool:
    return agent.state in states and len(agent.active_tasks) < agent.max_concurrency


class FleetView:
    """Agent id -> (its record's JSON as last read, the parsed agent), as of the last read;
    and of those, the ones with a free slot in the states last asked for (``available``).

    A whole read replaces the view (``agents``), so it holds what that read found and no
    more: an agent deleted (by any replica), or no longer in the states read, is dropped; one
    that comes back has changed (its state at least), so it would be parsed again anyway. A
    read of what changed applies to it (``changed``), and keeps the agents with a free slot
    up to date as it goes: a pass over a large fleet then costs in proportion to what changed
    and to the agents it can use, not to every agent (10,000 agents: 7 ms to look at each
    one again at every pass). A store keeps one, for its reads of the fleet (on SQLite, of the
    available agents)."""

    def __init__(self) -> None:
        self._agents: dict[str, tuple[str, Agent]] = {}
        self.read = False  # whether a read has been seen: until then the size is unknown
        self._states: frozenset[str] | None = None  # what ``available`` was last asked for
        self._available: dict[str, Agent] = {}  # of those, the agents with a free slot

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
        self._states = None  # the agents with a free slot are found again when asked
        return [agent for _, agent in seen.values()]

    def changed(self, rows: Iterable[tuple[str, str | None]]) -> None:
        """The records of ``rows`` (id and JSON, None: the agent is gone) replace what the
        view held for them."""
        known, available, states = self._agents, self._available, self._states
        for agent_id, raw in rows:
            if raw is None:
                known.pop(agent_id, None)
                available.pop(agent_id, None)
                continue
            kept = known.get(agent_id)
            if kept is None or kept[0] != raw:
                kept = known[agent_id] = (raw, PARSED.load(Agent, raw))
            if states is None:
                continue
            if _free(kept[1], states):
                available[agent_id] = kept[1]
            else:
                available.pop(agent_id, None)

    def all(self) -> list[Agent]:
        """Every agent the view holds."""
        return [agent for _, agent in self._agents.values()]

    def available(self, states: Collection[str]) -> list[Agent]:
        """The agents in one of ``states`` with a free slot (found again only when asked for
        other states than last time, or after a whole read)."""
        wanted = states if isinstance(states, frozenset) else frozenset(states)
        if wanted != self._states:
            self._states = wanted
            self._available = {
                agent_id: agent
                for agent_id, (_, agent) in self._agents.items()
                if _free(agent, wanted)
            }
        return list(self._available.values())
