"""The fleet as a store last read it, parsed: so a read of every agent parses only those that
changed since the last one.

The dispatcher reads the available agents at each pass that has work. On the shared stores a
read may bring only the agents that changed since the last one (Redis: the keys its
invalidations named, ``redis/fleet_feed.py``; PostgreSQL: the rows written since the last
read's snapshot): ``changed`` applies those to the view, which then answers for the rest.

The records of a whole read were parsed through the shared cache of parsed records (``parsed.py``), which holds a few thousand records of every kind: past 8,192
agents (fewer once tasks take their share) each pass parsed every agent again. A read of
10,000 agents on Redis then took 170 ms of the event loop, at every pass; with this view,
an unchanged agent costs a dictionary lookup and a string comparison.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from ..models import Agent
from .parsed import PARSED


def _free(agent: Agent, states: frozenset[str]) -> bool:
    return agent.state in states and len(agent.active_tasks) < agent.max_concurrency


class AvailableAgents(list[Agent]):
    """The agents a read found with a free slot; those of one capability from the view's
    index (``with_capability``), where looking at each agent for it cost a pass 10 ms with
    10,000 agents (an attribute read and a list search each, on objects scattered in memory).
    Built without an index (SQLite's read, a plain list wrapped by the pass), it looks at each
    agent."""

    def __init__(self, agents: Iterable[Agent], index: FreeAgents | None = None) -> None:
        super().__init__(agents)
        self._index = index

    def with_capability(self, capability: str) -> list[Agent]:
        """The agents that have ``capability``: as the view holds them now (a read since may
        have changed some: the slot's compare-and-set decides, as for any agent read)."""
        if self._index is None:
            return [a for a in self if capability in a.capabilities]
        return self._index.with_capability(capability)


class FreeAgents:
    """The agents with a free slot in ``states``, by id and by capability, kept as agents
    change; an agent that changes and stays keeps its place (the picker's turn goes round
    the same order)."""

    def __init__(self, states: frozenset[str], agents: Iterable[Agent]) -> None:
        self.states = states
        self._by_id: dict[str, Agent] = {}
        self._by_capability: dict[str, dict[str, Agent]] = {}
        for agent in agents:
            self.put(agent)

    def put(self, agent: Agent) -> None:
        """``agent`` as it is now: kept, replaced, or dropped when it has no free slot."""
        agent_id = agent.agent_id
        old = self._by_id.get(agent_id)
        if not _free(agent, self.states):
            if old is not None:
                self.drop(agent_id)
            return
        if old is not None and old.capabilities != agent.capabilities:
            self.drop(agent_id)
        self._by_id[agent_id] = agent
        for capability in agent.capabilities:
            self._by_capability.setdefault(capability, {})[agent_id] = agent

    def drop(self, agent_id: str) -> None:
        old = self._by_id.pop(agent_id, None)
        if old is not None:
            for capability in old.capabilities:
                self._by_capability.get(capability, {}).pop(agent_id, None)

    def agents(self) -> AvailableAgents:
        return AvailableAgents(self._by_id.values(), self)

    @staticmethod
    def of(kept: FreeAgents | None, states: Collection[str], agents: Iterable[Agent]) -> FreeAgents:
        """``kept`` when it is of ``states``, else those of ``agents`` (only iterated then)."""
        wanted = states if isinstance(states, frozenset) else frozenset(states)
        if kept is not None and kept.states == wanted:
            return kept
        return FreeAgents(wanted, agents)

    def with_capability(self, capability: str) -> list[Agent]:
        members = self._by_capability.get(capability)
        return list(members.values()) if members else []


class FleetView:
    """Agent id -> (its record's JSON as last read, the parsed agent), as of the last read;
    and of those, the ones with a free slot in the states last asked for (``available``).

    A whole read replaces the view (``agents``), so it holds what that read found and no
    more: an agent deleted (by any replica), or no longer in the states read, is dropped; one
    that comes back has changed (its state at least), so it would be parsed again anyway. A
    read of what changed applies to it (``changed``), and keeps the agents with a free slot
    up to date as it goes (``FreeAgents``): a pass over a large fleet then costs in
    proportion to what changed and to the agents it can use, not to every agent (10,000
    agents: 7 ms to look at each one again at every pass). A store keeps one, for its reads
    of the fleet (on SQLite, of the available agents)."""

    def __init__(self) -> None:
        self._agents: dict[str, tuple[str, Agent]] = {}
        self.read = False  # whether a read has been seen: until then the size is unknown
        self._free: FreeAgents | None = None  # of the states last asked for

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
        self._free = None  # the agents with a free slot are found again when asked
        return [agent for _, agent in seen.values()]

    def changed(self, rows: Iterable[tuple[str, str | None]]) -> None:
        """The records of ``rows`` (id and JSON, None: the agent is gone) replace what the
        view held for them."""
        known, free = self._agents, self._free
        for agent_id, raw in rows:
            if raw is None:
                known.pop(agent_id, None)
                if free is not None:
                    free.drop(agent_id)
                continue
            kept = known.get(agent_id)
            if kept is not None and kept[0] == raw:
                continue
            kept = known[agent_id] = (raw, PARSED.load(Agent, raw))
            if free is not None:
                free.put(kept[1])

    def all(self) -> list[Agent]:
        """Every agent the view holds."""
        return [agent for _, agent in self._agents.values()]

    def available(self, states: Collection[str]) -> AvailableAgents:
        """The agents in one of ``states`` with a free slot (found again only when asked for
        other states than last time, or after a whole read)."""
        self._free = FreeAgents.of(self._free, states, (a for _, a in self._agents.values()))
        return self._free.agents()


class AgentsById(dict[str, Agent]):
    """Agents by id that keep the index of those with a free slot (``FreeAgents``) as they
    are put and popped: memory://'s agents, whose read of the available agents was a look at
    every agent (10,000 agents: 3 ms of a pass, and 10 more for a capability's)."""

    _free: FreeAgents | None = None  # of the states last asked for

    def __setitem__(self, agent_id: str, agent: Agent) -> None:
        super().__setitem__(agent_id, agent)
        if self._free is not None:
            self._free.put(agent)

    def pop(self, agent_id: str, default: Any = None) -> Any:
        """As ``dict.pop`` with a default (the only way the store removes an agent)."""
        agent = super().pop(agent_id, default)
        if self._free is not None:
            self._free.drop(agent_id)
        return agent

    def __delitem__(self, agent_id: str) -> None:
        self.pop(agent_id)

    def available(self, states: Collection[str]) -> AvailableAgents:
        """The agents in one of ``states`` with a free slot."""
        self._free = FreeAgents.of(self._free, states, self.values())
        return self._free.agents()
