"""What a dispatch pass looks at first: steps leased to this process with the write that
queued them (``Storage.set_claimant``), or the head of the queue.

At idle, a run's next step is queued by its agent's report, and the dispatcher's pass that
follows would first claim it and read the agents: a round trip on a shared store, on the
run's critical path at every step. A shared store (Redis, PostgreSQL) leases the step to
this process in the write that queues it, when no pass is under way here and the step is the
only ready entry, and reads the agents after that write: the pass goes straight to the
hand-over.
Otherwise the pass claims the queue's head, with the agents read in the same turn when this
process just queued work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from datetime import datetime
from typing import NamedTuple

from ..models import Agent, QueueEntry
from ..storage.base import Storage
from .wakeup import Wakeup

Claim = Callable[[datetime, int], Awaitable[list[QueueEntry]]]

logger = logging.getLogger("opscore.dispatcher")


class Look(NamedTuple):
    """A pass's first look: the entries it holds, the available agents when they were read
    (None: not yet), how many entries it asked for (fewer: the queue held no more), and
    whether the entries were held from claims (their fleet read may be out of date)."""

    entries: list[QueueEntry]
    agents: list[Agent] | None
    asked: int
    held: bool


class FirstLook:
    """A pass's first look; and the dispatcher's ``Claimant``: what was leased to it, until
    its next pass."""

    def __init__(
        self,
        storage: Storage,
        wakeup: Wakeup,
        available_states: Collection[str],
        claim: Claim,
        running: Callable[[], bool],
    ) -> None:
        self.storage = storage
        self.claim = claim
        self.wakeup = wakeup
        self.available_states = available_states
        self.running = running
        self._held: list[QueueEntry] = []
        self._fleet: list[Agent] = []
        self._in_pass = False

    def wants_claims(self) -> bool:
        """A step queued while no dispatch pass is under way would be the next pass's only
        entry: the write that queues it may lease it here, and read the agents along. Not
        during a pass, which may have looked at the queue already: under load, when passes
        follow each other and the queue is seldom empty, a claim asked for would mostly
        cost Redis a command and find another entry ready."""
        return self.running() and not self._in_pass

    @contextlib.contextmanager
    def passing(self) -> Iterator[None]:
        """Around a dispatch pass (not the sweeps, which take a few round trips each
        second: a step queued meanwhile is still the next pass's only entry)."""
        self._in_pass = True
        try:
            yield
        finally:
            self._in_pass = False

    def take_claimed(self, entries: list[QueueEntry], fleet: list[Agent]) -> None:
        """Entries leased here as they were queued, and the agents as read right after:
        held for the next pass, which is woken."""
        self._held += entries
        self._fleet = fleet
        self.wakeup.claimed([entry.task_id for entry in entries])
        self.wakeup.set(capacity=False)

    async def give_back(self, requeue: Callable[[Iterable[QueueEntry]], Awaitable[None]]) -> None:
        """At stop: what is held goes back to the queue for another replica now, not when
        its leases run out (they do if the store is away)."""
        held, _ = self.take()
        if held:
            try:
                await requeue(held)
            except Exception:
                logger.warning("entries held at stop wait out their leases", exc_info=True)

    @property
    def holding(self) -> bool:
        """Entries leased here wait for the next pass."""
        return bool(self._held)

    def take(self) -> tuple[list[QueueEntry], list[Agent]]:
        """The entries held (now the caller's to settle) and the fleet read last with them."""
        held, fleet = self._held, self._fleet
        self._held, self._fleet = [], []
        return held, fleet

    async def look(self, now: datetime, limit: int, more: int) -> Look:
        """The entries held, if any, with the available agents of the fleet read with them;
        asked for: one more than held (no other entry was ready as they were leased). When
        this process queued more since, and the pass took that news, the head of the queue
        (``more`` entries) is claimed with them. Otherwise the head of the queue (``limit``
        entries at most), and the available agents read in the same turn (one round trip,
        not two, before the hand-over) when this process just queued work, so the queue is
        very likely not empty; else the agents are read only once an entry is there (None
        here): most passes, woken by an idle report, find no work."""
        held, fleet = self.take()
        if held:
            states = self.available_states
            agents = [
                a for a in fleet if a.state in states and len(a.active_tasks) < a.max_concurrency
            ]
            if not self.wakeup.queued:
                return Look(held, agents, len(held) + 1, True)
            self.wakeup.queued = False
            return Look(held + await self.claim(now, more), agents, len(held) + more, True)
        if not self.wakeup.queued:
            return Look(await self.claim(now, limit), None, limit, False)
        self.wakeup.queued = False
        entries, agents = await asyncio.gather(
            self.claim(now, limit), self.storage.available_agents(self.available_states)
        )
        return Look(entries, agents, limit, False)
