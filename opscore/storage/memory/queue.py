"""MemoryStorage: the task queue, dead letters and idempotency keys."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from datetime import datetime

from ...models import (
    DeadLetter,
    Page,
    QueueEntry,
)
from .base import _Base, _page

# idempotency keys kept at most, the oldest forgotten first
IDEMPOTENCY_KEYS = 100_000


class QueueRecords(_Base):
    # --- queue ------------------------------------------------------------------------------
    async def enqueue(self, task_id: str, *, priority: int, ready_at: datetime) -> None:
        with self._lock:
            self._put_in_queue(task_id, priority, ready_at)

    async def dequeue_ready(
        self, now: datetime, limit: int, *, follows: bool = False
    ) -> list[QueueEntry]:
        with self._lock:
            while self._delayed and self._delayed[0][0] <= now:
                _ready_at, seq, task_id, priority = heapq.heappop(self._delayed)
                if self._queued.get(task_id) == seq:
                    heapq.heappush(self._ready, (-priority, seq, task_id))
            entries: list[QueueEntry] = []
            while self._ready and len(entries) < limit:
                neg_priority, seq, task_id = heapq.heappop(self._ready)
                if self._queued.get(task_id) != seq:
                    continue
                del self._queued[task_id]
                entries.append(
                    QueueEntry(task_id=task_id, priority=-neg_priority, ready_at=now, seq=seq)
                )
            return entries

    async def ack(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            for task_id in task_ids:
                self._acknowledge(task_id)

    async def requeue(self, entries: Iterable[QueueEntry]) -> None:
        with self._lock:
            for entry in entries:
                if entry.task_id in self._queued:
                    continue
                self._queued[entry.task_id] = entry.seq
                heapq.heappush(self._ready, (-entry.priority, entry.seq, entry.task_id))

    async def queue_depth(self) -> int:
        return len(self._queued)

    async def oldest_ready_at(self, now: datetime) -> datetime | None:
        with self._lock:
            # every entry until it is acknowledged: waiting, delayed, or being handed over
            return min((at for at in self._since.values() if at <= now), default=None)

    async def next_ready_at(self, now: datetime) -> datetime | None:
        # entries put back wait in the ready heap, so the delayed heap's head is the answer
        with self._lock:
            while self._delayed and self._queued.get(self._delayed[0][2]) != self._delayed[0][1]:
                heapq.heappop(self._delayed)
            return self._delayed[0][0] if self._delayed else None

    # --- dead letters and idempotency -------------------------------------------------------
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        with self._lock:
            self._dead.pop(entry.task_id, None)
            self._dead[entry.task_id] = entry

    async def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        with self._lock:
            items = list(reversed(self._dead.values()))
        return _page(items, offset, limit)

    async def pop_dead_letter(self, task_id: str) -> DeadLetter | None:
        with self._lock:
            return self._dead.pop(task_id, None)

    async def remember_idempotency_key(
        self, key: str, session_id: str, *, now: datetime, ttl: float
    ) -> str | None:
        with self._lock:
            found = self._idempotency.get(key)
            if found is not None and (now - found[1]).total_seconds() < ttl:
                return found[0]
            # oldest first: expired keys leave from the front, in O(1) per call, and so does the
            # oldest live one past the bound (its run is long retired by then)
            self._idempotency.pop(key, None)
            while self._idempotency:
                _, seen = self._idempotency[next(iter(self._idempotency))]
                if (now - seen).total_seconds() < ttl and len(self._idempotency) < IDEMPOTENCY_KEYS:
                    break
                self._idempotency.popitem(last=False)
            self._idempotency[key] = (session_id, now)
            return None

    async def forget_idempotency_key(self, key: str) -> None:
        with self._lock:
            self._idempotency.pop(key, None)
