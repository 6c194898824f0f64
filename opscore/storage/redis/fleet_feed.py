"""Which agents changed since the fleet was last read, as Redis tells it (client-side caching).

The dispatcher reads the fleet at every pass that has work, and the metrics and the liveness
sweep read it too. Each read was the whole fleet: a script reading the set of agents and an
``MGET`` of every record (three commands), so 10,000 agents cost about 40 ms of the event loop
and megabytes of replies at every pass, though a pass changes a few agents at most.

Redis's client-side caching in broadcasting mode (``CLIENT TRACKING on REDIRECT <own id>
BCAST PREFIX <the agents' key prefix>``, Redis 6 and later) names every agent key written by
anyone (another replica, this one, an operator's ``redis-cli``) on one connection of ours, as
a message of the ``__redis__:invalidate`` channel. It costs the writers no command: Redis sends
the names once per turn of its own loop. A read then asks only for the keys named since the
last one (one ``MGET``), or nothing at all, and the view of the fleet (``storage/fleet.py``)
answers for the rest.

What keeps the view right:

- **A key named while its read is in flight is read again** next time: the read may have been
  answered before the write it names. ``plan`` hands the keys over and starts a new set, so a
  name that arrives meanwhile is kept.
- **This process's own writes name their keys at once** (``touched``, from the store's scripts
  and writes), not when Redis's message comes: a pass woken by the report that freed an agent's
  slot reads that agent, whichever socket the event loop happens to read first.
- **No feed, no trust.** Until the connection is subscribed, after it is lost, and where the
  server refuses tracking (an ACL without ``CLIENT``, a proxy), every read is a whole read, as
  before; the connection is tried again with a growing pause. The first read once it is up is a
  whole read, and so is every read after Redis names no keys (``FLUSHDB``, ``FLUSHALL``).
- **A whole read at least every ``REFRESH`` seconds** anyway: what a feed cannot tell (a
  connection that stopped delivering without closing) lasts that long at most. Meanwhile a
  stale record costs a compare-and-set that fails (a slot taken elsewhere) or a slot found a
  little later (one freed elsewhere), never a task handed to an agent without a free slot:
  the slot's compare-and-set is what decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

logger = logging.getLogger("opscore.storage.redis")

CHANNEL = "__redis__:invalidate"
REFRESH = 5.0  # seconds between whole reads of the fleet while the feed is up
FIRST_RETRY = 0.5  # seconds before a lost or refused feed is tried again, doubled each time
LAST_RETRY = 30.0


class FleetFeed:
    """The agent keys written since the last read of the fleet, kept by a connection that
    Redis tells of every write of a key under ``prefix``."""

    def __init__(self, prefix: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.prefix = prefix
        self.clock = clock
        self._named: set[str] = set()  # keys written since the last read began
        self._whole = True  # the next read must read every agent
        self._live = False  # subscribed, and delivering what Redis names
        self._last_whole = -float("inf")
        self._task: asyncio.Task[None] | None = None
        self._pause = FIRST_RETRY
        self._warned = False
        self._tried = asyncio.Event()  # the first try ended: subscribed, or refused

    @property
    def live(self) -> bool:
        return self._live

    async def start(self, pool: Any, *, wait: float = 2.0) -> None:
        """Follow Redis's names of written keys on a connection of ``pool`` (redis-py's: the
        URL's password, database and TLS hold), from now until ``close``; back once the
        connection is subscribed or refused (``wait`` seconds at most), so that a store just
        opened sends nothing more of its own."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(pool), name="opscore-fleet-feed")
        with contextlib.suppress(TimeoutError):  # the reads are whole until it is up
            await asyncio.wait_for(self._tried.wait(), wait)

    async def close(self) -> None:
        task, self._task = self._task, None
        self._live = False
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def touched(self, keys: Iterable[str]) -> None:
        """This process wrote (or may have written) ``keys``: agents among them are read at
        the next read of the fleet."""
        prefix = self.prefix
        for key in keys:
            if key.startswith(prefix):
                self._named.add(key)

    def plan(self) -> list[str] | None:
        """The agent keys the read about to start must ask for (maybe none), or None when it
        must read every agent. The keys are handed over: names arriving from now on are kept
        for the next read."""
        now = self.clock()
        if not self._live or self._whole or now - self._last_whole >= REFRESH:
            self._whole = False
            self._named = set()
            self._last_whole = now
            return None
        keys, self._named = self._named, set()
        return list(keys)

    def failed(self) -> None:
        """The read given by ``plan`` did not complete: the next one reads every agent."""
        self._whole = True

    # --- the connection ----------------------------------------------------------------------
    async def _follow(self, pool: Any) -> None:
        """Subscribed for as long as the connection lasts; then again after a pause (doubled
        at each failure in a row, up to ``LAST_RETRY``), until ``close``."""
        while True:
            try:
                await self._subscribed(pool)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._warned:  # once per outage: the whole reads go on meanwhile
                    self._warned = True
                    logger.warning(
                        "Redis does not tell of agent writes (%s: %s); reading the whole "
                        "fleet at each pass until it does",
                        type(exc).__name__,
                        str(exc)[:200],
                    )
            finally:
                self._live = False
                self._tried.set()
            await asyncio.sleep(self._pause)
            self._pause = min(self._pause * 2, LAST_RETRY)

    async def _subscribed(self, pool: Any) -> None:
        connection = pool.make_connection()
        try:
            await connection.connect()
            await connection.send_command("CLIENT", "ID")
            own_id = await connection.read_response()
            await connection.send_command(
                "CLIENT", "TRACKING", "on", "REDIRECT", own_id, "BCAST", "PREFIX", self.prefix
            )
            await connection.read_response()  # an error reply raises: tracking refused
            await connection.send_command("CLIENT", "SETNAME", "opscore-fleet-feed")
            await connection.read_response()  # so that an operator's CLIENT LIST tells it
            await connection.send_command("SUBSCRIBE", CHANNEL)
            await connection.read_response()
            self._live, self._whole = True, True  # what was written before now: read it all
            self._pause, self._warned = FIRST_RETRY, False
            self._tried.set()
            while True:
                message = await connection.read_response()
                self._heard(message)
        finally:
            await connection.disconnect()

    def _heard(self, message: Any) -> None:
        """A message of the subscribed connection: the keys written, or None (every key:
        ``FLUSHDB``), under ``__redis__:invalidate``."""
        if not isinstance(message, list) or len(message) != 3 or message[0] != "message":
            return  # a subscription's confirmation, a pong
        keys = message[2]
        if keys is None:
            self._whole = True
        else:
            self.touched(keys)
