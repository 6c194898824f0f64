"""Free agent slots during one dispatch pass, and the agents they belong to.

Both are read from the agents as the pass asks, not built for the whole fleet up front: a
pass hands over a few tasks, and building a slot count per agent and an index by capability
of every available agent at every pass cost 17% of a replica's time with 1,000 agents
(py-spy, one workflow at a time on Redis), 8 ms a pass with 10,000.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..models import Agent, TaskRun
from ..storage.fleet import AvailableAgents


class FreeSlots:
    """Free task slots per agent during one pass, each read from its agent when first asked,
    with ``total``: the free slots of the agents read so far, less those taken. The agents are
    read up front only until ``enough`` slots are found (or all of them), so ``total`` is exact
    when the fleet has fewer free slots than that, and otherwise at least ``enough`` less what
    the pass took: a pass, which takes fewer than ``enough`` (``dispatcher.BATCH``), never
    finds it at zero while slots are free."""

    def __init__(
        self,
        agents: list[Agent],
        left: Callable[[Agent, datetime], bool] | None,
        now: datetime,
        *,
        enough: int,
    ) -> None:
        """``left``: whether an agent is left to another replica (with other replicas up:
        ``ReportedHere.left_to_another``, whose write freed it and takes its slots)."""
        self._left = left
        self._now = now
        self._slots: dict[str, int] = {}
        self.total = 0
        for agent in agents:
            if self.total >= enough:
                break
            self.of(agent)

    def of(self, agent: Agent) -> int:
        """The agent's free slots now (none when it is left to another replica)."""
        slots = self._slots.get(agent.agent_id)
        if slots is None:
            left = self._left
            if left is not None and left(agent, self._now):
                slots = 0
            else:
                slots = agent.max_concurrency - len(agent.active_tasks)
            self._slots[agent.agent_id] = slots
            self.total += max(slots, 0)
        return slots

    def take(self, agent: Agent) -> None:
        self._slots[agent.agent_id] = self.of(agent) - 1
        self.total -= 1

    def give_back(self, agent: Agent) -> None:
        """A slot taken for a start that did not happen (the task moved on meanwhile)."""
        self._slots[agent.agent_id] = self.of(agent) + 1
        self.total += 1

    def exhaust(self, agent: Agent) -> None:
        self.total -= max(self.of(agent), 0)
        self._slots[agent.agent_id] = 0


class PassFleet:
    """The available agents of one pass, with their free slots; a task's candidates found
    when the pass first asks for its capability (or its agent), and kept for the pass."""

    def __init__(self, agents: list[Agent], free: FreeSlots) -> None:
        self.agents = agents
        self.free = free
        self._by_id: dict[str, Agent] | None = None
        self._by_capability: dict[str, list[Agent]] = {}

    def candidates(self, task: TaskRun) -> list[Agent]:
        """The agents that may take ``task``: its own agent, those with its capability (in the
        fleet's order), or any."""
        if task.target_agent_id is not None:
            if self._by_id is None:
                self._by_id = {a.agent_id: a for a in self.agents}
            agent = self._by_id.get(task.target_agent_id)
            return [agent] if agent is not None else []
        capability = task.agent_capability
        if capability is None:
            return self.agents
        found = self._by_capability.get(capability)
        if found is None:  # from the store's index of them, where it keeps one
            agents = self.agents  # every store answers AvailableAgents; a plain list is wrapped
            view = agents if isinstance(agents, AvailableAgents) else AvailableAgents(agents)
            found = self._by_capability[capability] = view.with_capability(capability)
        return found
