"""Which agents report to this replica: tasks go to them first.

Behind the load balancer of ``deploy/nginx.conf``, an agent's state reports all reach one
replica (its id, hashed). That replica wrote the agent's record last, so its sight of the
record is current, and a report it receives is written in one round trip. A task handed to
the agent by another replica breaks that: the hand-over takes one of the agent's slots
there, and the agent's reports then meet a stale sight on their own replica (the record,
and the task, read again before the write). With two replicas on Redis, that was about two
round trips more per workflow, and dispatch passes of both replicas raced for the same free
agents (entries put back when the other took the slot).

So, while other replicas are up:

- an agent whose report another replica wrote less than ``LEFT_FOR`` ago is left to that
  replica for this long: its report woke that replica's dispatcher, which takes the slot a
  moment later. Both dispatchers saw the slot free, and the one that lost the race put its
  entries back (with two replicas on Redis, 1.2 failed claims per workflow). Should that
  replica be gone, the agent is taken here after ``LEFT_FOR``, at the next pass (the
  dispatch interval). A report time ahead of this replica's clock (skew) leaves nothing.
- the picker tries last the candidates whose latest report another replica wrote (the
  record's report timestamp is not the one this replica wrote). It is only an order among
  free candidates: the round robin is kept within each part, every candidate is still
  tried, and an agent that never reported stays in front.

With one replica up (or on a store no other replica can share), both are off and the order
is the round robin as before: otherwise a replica just restarted, that has written no report
yet, would put every agent that reported before behind those that never do (A2A agents,
pull workers).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import TypeVar

from ..models import Agent

A = TypeVar("A", bound=Agent)

KEPT = 100_000  # agents remembered (least recently reported forgotten first)
LEFT_FOR = timedelta(seconds=0.5)  # an agent freed by another replica's write is left to it


class ReportedHere:
    """The report timestamp this replica last wrote for each agent (bounded, LRU)."""

    def __init__(self, replicas: Callable[[], int] = lambda: 1, kept: int = KEPT) -> None:
        self.replicas = replicas  # how many replicas are up, this one included
        self.kept = kept
        self._written: OrderedDict[str, datetime] = OrderedDict()

    def wrote(self, agent: Agent) -> None:
        """This replica wrote ``agent``'s latest report (its record, after the write)."""
        if agent.state_timestamp is None:
            return
        written = self._written
        written[agent.agent_id] = agent.state_timestamp
        written.move_to_end(agent.agent_id)
        if len(written) > self.kept:
            written.popitem(last=False)

    def elsewhere(self, agent: Agent) -> bool:
        """The agent's latest report (as its record says) was written by another replica."""
        stamp = agent.state_timestamp
        return stamp is not None and self._written.get(agent.agent_id) != stamp

    def left_to_another(self, agent: Agent, now: datetime) -> bool:
        """Whether this replica leaves ``agent``'s free slots to the replica its latest report
        reached, which wrote that report less than ``LEFT_FOR`` ago (while others are up)."""
        recent = timedelta(0) <= now - agent.last_seen < LEFT_FOR
        return recent and self.elsewhere(agent) and self.replicas() > 1

    def ordered(self, candidates: Iterable[A]) -> Iterator[A]:
        """``candidates`` with those reporting elsewhere moved last, each part in its order
        (as they are while this replica is the only one up). Lazily: the picker stops at the
        first with a free slot, and a fleet of thousands is not sorted at each task."""
        if self.replicas() <= 1:
            yield from candidates
            return
        there: list[A] = []
        for agent in candidates:
            if self.elsewhere(agent):
                there.append(agent)
            else:
                yield agent
        yield from there
