"""When a state report also trims its agent's history (PostgreSQL, SQLite).

A trim is a DELETE that finds the oldest report to keep by walking the agent's newest
``history_limit`` in its index. Done at every report, that walk was about a quarter of
PostgreSQL's time for a report's history (40-60 us of a 190 us statement, measured alone) and
about 14 us of a 40 us SQLite write. So, as on Redis (``redis/history.py``), a history is
trimmed in steps: at the first report this process writes for an agent, then once every
quarter of the limit. Between two steps it holds up to a quarter more than it keeps, per
process writing the agent's reports; ``AgentStates.state_history`` shows the newest
``history_limit`` whatever a store holds.

The count is this process's own, kept for the agents it wrote lately (least recently written
out first): an agent it forgot, or a restart, only trims one report sooner.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

AGENTS = 10_000  # agents whose count of reports since their last trim is kept


class HistoryTrims:
    """Per agent, the reports this process wrote since it last trimmed the agent's history."""

    def __init__(self, agents: int = AGENTS) -> None:
        self.agents = agents
        self._since: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()  # the SQLite store writes on its own thread too

    def due(self, agent_id: str, limit: int) -> bool:
        """Whether the report this process is writing now trims ``agent_id``'s history
        (counted as done: a write that fails only moves the next trim one report on)."""
        every = max(1, limit // 4)
        with self._lock:
            since = self._since.pop(agent_id, None)
            count = 0 if since is None or since + 1 >= every else since + 1
            self._since[agent_id] = count
            if len(self._since) > self.agents:
                self._since.popitem(last=False)
        return count == 0
