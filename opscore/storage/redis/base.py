"""Shared plumbing: the clients, key names, compare-and-set and reads that ride along.

Shared store on Redis (``redis://host:port/db``), for several Ops-Core replicas.

Each record is a JSON string under its own key; a change is a compare-and-set script that
writes only if the record still holds the value it was decided on (``scripts.CAS``), so
changes are atomic across replicas. The queue is three sorted sets (delayed, ready, leased)
moved by scripts: a claimed entry is leased, and if the replica that claimed it dies before
acknowledging it, the lease expires and another replica's dispatcher gets it. The hot
commands go out batched (``batch.py``). Turn on Redis's append-only file for durability.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from redis.exceptions import NoScriptError

from ...errors import OpsCoreError, StorageError
from ...models import Page
from ..fleet import FleetView
from ..parsed import PARSED
from ..seen import GUESSES, UNSEEN, Seen
from ..turns import WriteTurns
from ..urls import redacted
from .batch import CommandBatcher
from .cas_groups import CasGroups
from .fleet_feed import FleetFeed
from .history import HISTORY_PAGE
from .keys import KeyNames
from .queue_scripts import ACK, DEQUEUE, ENQUEUE, REQUEUE
from .scripts import CAS, CAS_GROUPS, RECORDS, SAVE_RUN, SAVE_SESSION, UNINDEX_SETTLED, Ops
from .server import require_version

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
LEASE = timedelta(seconds=30)
LANES = 4  # clients with a connection each, used in turn (see _Base._redis)
# values read along with a write serve a read of the same call chain this soon after at most
ALONG_SECONDS = 0.5
# key -> (its value, when read); a list of ids read along keeps the ids as a tuple
Along = dict[str, tuple[str | tuple[str, ...] | None, float]]
_ALONG: ContextVar[Along | None] = ContextVar("opscore_redis_read_along", default=None)
SCRIPTS = {
    "dequeue": DEQUEUE,
    "ack": ACK,
    "requeue": REQUEUE,
    "cas": CAS,
    "cas_groups": CAS_GROUPS,
    "enqueue": ENQUEUE,
    "save_session": SAVE_SESSION,
    "save_run": SAVE_RUN,
    "records": RECORDS,
    "unindex_settled": UNINDEX_SETTLED,
    "history_page": HISTORY_PAGE,
}


def _load(model: type[M], raw: str | None) -> M | None:
    return PARSED.load(model, raw) if raw is not None else None


def _page(items: list[M], offset: int, limit: int) -> Page[M]:
    return Page(items=items[offset : offset + limit], total=len(items), offset=offset, limit=limit)


def _due_score(due: datetime | None) -> float:
    """A task's score in the in-flight index, from its ``sweep_due`` (+inf when no sweep will
    act on it until it is written again: it stays listed, for reads of every task in flight)."""
    return math.inf if due is None else due.timestamp()


class _Base(KeyNames):
    """``Storage`` on Redis; safe to share between replicas."""

    writes_together = True  # those of one moment go out as one script (cas_groups.py)

    def __init__(self, url: str, *, prefix: str = "opscore:") -> None:
        self.url = url
        self.p = prefix
        self._lanes: list[Any] = []
        self._turn = 0
        self._scripts: dict[str, Any] = {}
        self._seen = Seen(GUESSES)
        self._fleet = FleetView()  # the agents as last read, parsed (fleet.py)
        self._feed = FleetFeed(self.k("agent", ""))  # which agents changed since (fleet_feed.py)
        self._fleet_read = asyncio.Lock()  # one read of the fleet at a time (its view)
        self._newest: dict[str, str] = {}  # per template, its newest version as last read
        # keys with a compare-and-set of this process in flight (_cas_many)
        self._turns = WriteTurns()
        self._leases_looked_at: datetime | None = None  # dequeue_ready's last look at leases
        self._batcher: CommandBatcher | None = None
        self._cas_groups = CasGroups(self._script)  # those of one moment in one script

    @property
    def _redis(self) -> Any:
        """The next of a few clients that each keep one connection (in turn).

        redis-py's pooled client takes a connection from its pool for every command; with
        many requests in flight it opened one connection each and spent 700 us of CPU per
        command, against under 50 us on a client with one connection of its own
        (``python -m bench.redis_clients``). A few such lanes keep commands flowing while
        one waits; pipelines still take their own connection from the shared pool."""
        if not self._lanes:
            raise StorageError("Redis store is not open")
        self._turn = (self._turn + 1) % len(self._lanes)
        return self._lanes[self._turn]

    async def open(self) -> None:
        import redis.asyncio as aioredis

        pool = aioredis.ConnectionPool.from_url(
            self.url, decode_responses=True, health_check_interval=30
        )
        self._lanes = [
            aioredis.Redis(connection_pool=pool, single_connection_client=True)
            for _ in range(LANES)
        ]
        self._batcher = CommandBatcher(pool)
        try:
            require_version(await self._redis.info("server"), self.url)
        except StorageError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise StorageError(f"Cannot reach Redis at {redacted(self.url)}: {exc}") from exc
        for name, source in SCRIPTS.items():
            self._scripts[name] = self._redis.register_script(source)
        await self._feed.start(pool)

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the registered Lua scripts, batched with other commands of this turn
        of the event loop (loaded again if Redis lost it, as after a restart)."""
        script = self._scripts[name]
        try:
            return await self._batched("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._redis.script_load(script.script)
            return await self._batched("EVALSHA", script.sha, len(keys), *keys, *args)
        finally:  # the agents it wrote (or may have) are read at the next read of the fleet
            self._feed.touched(keys)

    async def _batched(self, *command: Any) -> Any:
        if self._batcher is None:
            raise StorageError("Redis store is not open")
        return await self._batcher.call(*command)

    async def close(self) -> None:
        await self._feed.close()
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.close()
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            await lane.aclose()
        if lanes:
            await lanes[0].connection_pool.disconnect()

    async def ping(self) -> None:
        await self._redis.ping()

    def set_queue_listener(self, listener: Callable[[], None]) -> None:
        """Nothing to listen to: replicas on Redis find each other's work at their next dispatch interval."""

    async def _get(self, key: str) -> str | None:
        """GET that remembers what it read, so a compare-and-set that follows costs one
        round trip instead of two."""
        raw: str | None = await self._batched("GET", key)
        self._seen.put(key, raw)
        return raw

    def _read_along(self, reads: list[str | tuple[str, str]], raws: list[Any]) -> None:
        """Keep values read along with a write, for one ``_get_soon`` (or, for a session's
        tasks, ``_along_records``) of the same call chain."""
        along = _ALONG.get()
        if along is None:
            along = {}
            _ALONG.set(along)
        now = time.monotonic()
        # a long-lived chain (a sweep's loop) may never read what it read along: keep only
        # what is still fresh enough to be used
        for stale in [k for k, (_, at) in along.items() if now - at >= ALONG_SECONDS]:
            del along[stale]
        values = iter(raws)
        for read in reads:
            if isinstance(read, str):
                value = next(values) or None
                self._seen.put(read, value)
                along[read] = (value, now)
                continue
            ids_key, prefix = read
            count = int(next(values))
            if count < 0:  # more records than were worth reading along
                continue
            ids = []
            for _ in range(count):
                record_id, raw = next(values), next(values) or None
                ids.append(record_id)
                self._seen.put(prefix + record_id, raw)
                along[prefix + record_id] = (raw, now)
            along[ids_key] = (tuple(ids), now)

    def _along_records(
        self, keys: list[str], ids_key: str, prefix: str
    ) -> tuple[list[str | None], list[str]] | None:
        """``keys``' values and the records the list ``ids_key`` names, as read along with a
        write of this call chain a moment ago, if every one is still what this process last
        saw (it wrote none of them since); else None, and a read asks Redis. Used once."""
        along = _ALONG.get()
        if not along or ids_key not in along:
            return None
        now = time.monotonic()
        ids_kept = along.pop(ids_key)
        kept = [along.pop(key, None) for key in keys]
        ids, at = ids_kept
        if not isinstance(ids, tuple) or now - at >= ALONG_SECONDS:
            return None
        records: list[str] = []
        for record_id in ids:
            found = along.pop(prefix + record_id, None)
            if found is None or self._seen.get(prefix + record_id) != found[0]:
                return None
            if isinstance(found[0], str):  # a record gone meanwhile is left out, as a read would
                records.append(found[0])
        values: list[str | None] = []
        for key, found in zip(keys, kept, strict=True):
            if found is None or self._seen.get(key) != found[0] or isinstance(found[0], tuple):
                return None
            values.append(found[0])
        return values, records

    async def _get_soon(self, key: str) -> str | None:
        """GET, unless the same call chain (a request, a background task) read ``key`` along
        with a write a moment ago, and this process has not written it since: that value is
        then exactly what a GET issued at that moment would have answered. Used once."""
        along = _ALONG.get()
        kept = along.pop(key, None) if along else None
        if kept is not None:
            value, at = kept
            fresh = time.monotonic() - at < ALONG_SECONDS
            if fresh and not isinstance(value, tuple) and self._seen.get(key) == value:
                return value
        return await self._get(key)

    async def _cas(
        self,
        key: str,
        decide: Callable[[str | None], tuple[str | None, R, Callable[[Ops], None] | None]],
    ) -> R:
        """Optimistic read-modify-write of one key, usually in one round trip (``_cas_many``)."""

        def one(raws: list[str | None]) -> tuple[list[str | None], R, Any]:
            new, result, extra = decide(raws[0])
            return [new], result, extra

        return await self._cas_many([key], one)

    async def _cas_many(
        self,
        keys: list[str],
        decide: Callable[
            [list[str | None]], tuple[list[str | None], R, Callable[[Ops], None] | None]
        ],
    ) -> R:
        """Optimistic read-modify-write of several keys together, usually in one round trip.

        ``decide(raws)`` returns (per key, its new raw value or None to leave it; the result;
        extra writes or None). It first decides on the values this process last read or
        wrote; the script writes only if every key still holds exactly that value, and
        otherwise answers the current values, on which ``decide`` runs again. The extra
        writes run in the same script, so they land with the records or not at all.

        A change to a key this process is changing already waits for that one to land: it
        then decides on what that one wrote instead of on the value before it, which Redis
        would refuse (a hand-over's answer and the agent's report come together).
        """
        async with self._turns.turn(keys):
            return await self._cas_on_guesses(keys, decide)

    async def _cas_on_guesses(
        self,
        keys: list[str],
        decide: Callable[
            [list[str | None]], tuple[list[str | None], R, Callable[[Ops], None] | None]
        ],
    ) -> R:
        raws: list[str | None] = [self._seen.get(key) for key in keys]
        # only the keys with no guess are read (a guess of another key may be stale: the
        # script says so, as for any guess); a backlog of runs pushes the guesses of a run's
        # later tasks out before their turn comes, while the agent's stays
        unseen = [i for i, raw in enumerate(raws) if raw is UNSEEN]
        fresh = len(unseen) == len(keys)
        if unseen:
            read = await self._read_all([keys[i] for i in unseen])
            for i, raw in zip(unseen, read, strict=True):
                raws[i] = raw
        while True:
            try:
                news, result, extra = decide(raws)
            except OpsCoreError:
                if fresh:
                    raise
                # refused on a guess (an unknown agent, a stale timestamp): ask the store
                raws, fresh = await self._read_all(keys), True
                continue
            if extra is None and all(new is None for new in news):
                if fresh:
                    return result
                # nothing to write, judged on a guess: judge again on what the store holds
                raws, fresh = await self._read_all(keys), True
                continue
            ops = Ops()
            if extra is not None:
                extra(ops)
            args: list[str] = []
            for raw, new in zip(raws, news, strict=True):
                args += ["" if raw is None else "=" + raw, "0" if new is None else "1", new or ""]
            answer = await self._cas_groups.call(keys, [*args, *ops.args])
            if answer == 1 or answer[0] == 1:
                for key, raw, new in zip(keys, raws, news, strict=True):
                    self._seen.put(key, new if new is not None else raw)
                if ops.reads:
                    self._read_along(ops.reads, answer[1:])
                return result
            raws, fresh = [value or None for value in answer[1:]], True
            for key, raw in zip(keys, raws, strict=True):
                self._seen.put(key, raw)

    async def _read_all(self, keys: list[str]) -> list[str | None]:
        """Each key's value (as ``_get``), asked in the same turn: one write to Redis."""
        if len(keys) == 1:
            return [await self._get(keys[0])]
        return list(await asyncio.gather(*(self._get(key) for key in keys)))

    async def _records(self, index: str, kind: str, prefix: str) -> list[str]:
        """The raw records whose ids ``index`` (a list or set) holds, in one round trip;
        each is remembered as a guess for a compare-and-set that may follow."""
        flat = await self._script("records", keys=[index], args=[kind, self.k(prefix, "")])
        return self._remember(flat, prefix)

    def _remember(self, flat: list[str], prefix: str) -> list[str]:
        """The records of an answer of ids and records (alternating), each remembered as a
        guess for a compare-and-set that may follow."""
        raws = flat[1::2]
        for record_id, raw in zip(flat[::2], raws, strict=True):
            self._seen.put(self.k(prefix, record_id), raw)
        return raws

    async def _next(self, name: str) -> int:
        return int(await self._batched("INCR", self.k("seq", name)))
