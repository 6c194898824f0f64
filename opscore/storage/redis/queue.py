"""RedisStorage: the task queue, dead letters and idempotency keys."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from ...models import (
    DeadLetter,
    Page,
    QueueEntry,
    TaskRun,
)
from ..parsed import PARSED
from .base import (
    LEASE,
    _Base,
    _load,
)
from .queue_scripts import SEQ_SPAN, enqueue_args

LEASES_LOOK = timedelta(seconds=1)


class QueueRecords(_Base):
    # --- queue ------------------------------------------------------------------------------
    async def enqueue(self, task_id: str, *, priority: int, ready_at: datetime) -> None:
        await self._script(
            "enqueue",
            keys=self._enqueue_keys,
            args=enqueue_args(task_id, priority, ready_at.timestamp()),
        )

    async def dequeue_ready(
        self, now: datetime, limit: int, *, follows: bool = False
    ) -> list[QueueEntry]:
        """Claims entries and reads their tasks' records in the same round trip (with
        ``follows``, and the rows their completions may write along: queue_scripts.py)."""
        lease = (now + LEASE).timestamp()
        prefix = self.k("task", "")
        # leases last 30 s: a look for those that ran out once a second is soon enough (one
        # command less per claim under load); a clock that went back looks again
        last = self._leases_looked_at
        expired = "0" if last is not None and last <= now < last + LEASES_LOOK else "1"
        if expired == "1":
            self._leases_looked_at = now
        flat, follows_read = await self._script(
            "dequeue",
            keys=self._queue_keys,
            args=[
                now.timestamp(),
                lease,
                limit,
                prefix,
                expired,
                "1" if follows else "0",
                self.k("session", ""),
            ],
        )
        for key, raw in zip(follows_read[::2], follows_read[1::2], strict=True):
            self._seen.put(key, raw or None)
        entries = []
        for task_id, score, raw in zip(flat[::3], flat[1::3], flat[2::3], strict=True):
            # the ready score enqueue gave it: (1000 - priority) * SEQ_SPAN + seq
            rank, seq = divmod(int(float(score)), SEQ_SPAN)
            self._seen.put(prefix + task_id, raw or None)
            entries.append(
                QueueEntry(
                    task_id=task_id,
                    priority=1000 - rank,
                    ready_at=now,
                    seq=seq,
                    task=_load(TaskRun, raw or None),
                    read=True,
                )
            )
        return entries

    async def ack(self, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        if ids:
            await self._script("ack", keys=self._ack_keys, args=ids)

    async def requeue(self, entries: Iterable[QueueEntry]) -> None:
        ids = [e.task_id for e in entries]
        if ids:
            await self._script("requeue", keys=self._queue_keys, args=ids)

    async def queue_depth(self) -> int:
        delayed, ready, leased, _ = self._queue_keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(delayed)
            pipe.zcard(ready)
            pipe.zcard(leased)
            counts = await pipe.execute()
        return int(sum(counts))

    async def oldest_ready_at(self, now: datetime) -> datetime | None:
        """The lowest of 'since' (the ready-at of every entry not yet acknowledged: waiting,
        delayed or being handed over) up to ``now``."""
        first = await self._redis.zrangebyscore(
            self.k("q", "since"), "-inf", now.timestamp(), start=0, num=1, withscores=True
        )
        return datetime.fromtimestamp(first[0][1], UTC) if first else None

    async def next_ready_at(self, now: datetime) -> datetime | None:
        # asked by every dispatch pass that finds nothing to do: batched with other commands;
        # entries put back wait in the ready set, so the delayed set's head is the answer
        first = await self._batched("ZRANGE", self._queue_keys[0], 0, 0, "WITHSCORES")
        if not first:
            return None
        return datetime.fromtimestamp(float(first[1]), UTC)

    # --- dead letters and idempotency -------------------------------------------------------
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        seq = await self._next("dead")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.k("dead"), entry.task_id, PARSED.dump(entry))
            pipe.zadd(self.k("dead_order"), {entry.task_id: seq})
            await pipe.execute()

    async def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        total = await self._redis.zcard(self.k("dead_order"))
        ids = await self._redis.zrevrange(self.k("dead_order"), offset, offset + limit - 1)
        raws = await self._redis.hmget(self.k("dead"), ids) if ids else []
        items = [d for d in (_load(DeadLetter, r) for r in raws) if d is not None]
        return Page(items=items, total=total, offset=offset, limit=limit)

    async def pop_dead_letter(self, task_id: str) -> DeadLetter | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.k("dead"), task_id)
            pipe.hdel(self.k("dead"), task_id)
            pipe.zrem(self.k("dead_order"), task_id)
            raw, _, _ = await pipe.execute()
        return _load(DeadLetter, raw)

    async def remember_idempotency_key(
        self, key: str, session_id: str, *, now: datetime, ttl: float
    ) -> str | None:
        redis_key = self.k("idem", key)
        if await self._redis.set(redis_key, session_id, nx=True, px=max(int(ttl * 1000), 1)):
            return None
        existing = await self._redis.get(redis_key)
        return existing if existing is not None else None

    async def forget_idempotency_key(self, key: str) -> None:
        await self._redis.delete(self.k("idem", key))
