"""Free agent slots during one dispatch pass, and the agents they belong to."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from ..models import Agent


class FreeSlots(dict[str, int]):
    """Free task slots per agent during one pass, with their sum kept current, so a pass
    stops reading tasks the moment nothing could take them (no O(fleet) sum per task)."""

    def __init__(self, slots: dict[str, int]) -> None:
        super().__init__(slots)
        self.total = sum(v for v in slots.values() if v > 0)

    @classmethod
    def of(
        cls, agents: list[Agent], left: Callable[[Agent, datetime], bool] | None, now: datetime
    ) -> FreeSlots:
        """Free slots per agent; none on one ``left`` to another replica (with other
        replicas up: ``ReportedHere.left_to_another``, whose write freed it and takes them)."""
        return cls(
            {
                a.agent_id: 0
                if left is not None and left(a, now)
                else a.max_concurrency - len(a.active_tasks)
                for a in agents
            }
        )

    def take(self, agent_id: str) -> None:
        self[agent_id] -= 1
        self.total -= 1

    def give_back(self, agent_id: str) -> None:
        """A slot taken for a start that did not happen (the task moved on meanwhile)."""
        self[agent_id] += 1
        self.total += 1

    def exhaust(self, agent_id: str) -> None:
        self.total -= max(self[agent_id], 0)
        self[agent_id] = 0


class PassFleet:
    """The available agents of one pass, by id and by capability, with their free slots."""

    def __init__(self, agents: list[Agent], free: FreeSlots) -> None:
        self.agents = agents
        self.free = free
        self.by_id = {a.agent_id: a for a in agents}
        self.by_capability: dict[str, list[Agent]] = {}
        for agent in agents:
            for cap in agent.capabilities:
                self.by_capability.setdefault(cap, []).append(agent)
