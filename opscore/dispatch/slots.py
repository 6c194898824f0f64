"""Free agent slots during one dispatch pass."""

from __future__ import annotations


class FreeSlots(dict[str, int]):
    """Free task slots per agent during one pass, with their sum kept current, so a pass
    stops reading tasks the moment nothing could take them (no O(fleet) sum per task)."""

    def __init__(self, slots: dict[str, int]) -> None:
        super().__init__(slots)
        self.total = sum(v for v in slots.values() if v > 0)

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
