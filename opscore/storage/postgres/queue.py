"""PostgresStorage: the task queue, dead letters and idempotency keys."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from ...models import DeadLetter, Page, QueueEntry, TaskRun
from ..parsed import PARSED
from .base import CHANNEL, LEASE, _Base, _load
from .upkeep import QUEUE

# Claims skip rows another replica is claiming (SKIP LOCKED) instead of waiting for them.
# Each claimed task comes with its record; with other replicas up (``follows``), also with
# the row its completion may write along (TaskRun.next_step, ends_run, by their names in the
# stored JSON): the next step's, or its run's session. The replica that hands the task over
# most often writes that completion (dispatch/affinity.py), and would otherwise read that
# row first (reports.py: _Rows); alone, it has seen both rows (it started the run).
_CLAIM = """
WITH picked AS (
    SELECT task_id FROM opscore_queue
    WHERE ready_at <= $1 AND (lease_until IS NULL OR lease_until < $1)
    ORDER BY priority DESC, seq LIMIT $2
    FOR UPDATE SKIP LOCKED)
UPDATE opscore_queue q SET lease_until = $3
FROM picked LEFT JOIN opscore_tasks t ON t.task_id = picked.task_id
WHERE q.task_id = picked.task_id
RETURNING q.task_id, q.priority, q.seq, t.doc"""
_AND_FOLLOWS = """,
    (SELECT n.doc FROM opscore_tasks n
        WHERE n.task_id = t.doc::json #>> '{next_step,task_id}'),
    (SELECT s.doc FROM opscore_sessions s
        WHERE s.session_id = t.session_id AND t.doc::json ->> 'ends_run' = 'true')"""
_CLAIM_AND_FOLLOWS = _CLAIM + _AND_FOLLOWS


# One statement: queue (or re-queue) the task, and wake the other replicas when it commits.
_ENQUEUE = """
WITH queued AS (
    INSERT INTO opscore_queue (task_id, priority, ready_at, seq, lease_until)
    VALUES ($1, $2, $3, nextval('opscore_queue_seq'), NULL)
    ON CONFLICT (task_id) DO UPDATE SET priority = $2, ready_at = $3,
        seq = nextval('opscore_queue_seq'), lease_until = NULL
    RETURNING 1)
SELECT pg_notify($4, $5) FROM queued
"""


class QueueRecords(_Base):
    # --- queue ------------------------------------------------------------------------------
    async def enqueue(self, task_id: str, *, priority: int, ready_at: datetime) -> None:
        async with self._conn() as conn:
            await conn.execute(_ENQUEUE, task_id, priority, ready_at, CHANNEL, self._token)

    async def dequeue_ready(
        self, now: datetime, limit: int, *, follows: bool = False
    ) -> list[QueueEntry]:
        async with self._conn() as conn:
            claim = _CLAIM_AND_FOLLOWS if follows else _CLAIM
            rows = await conn.fetch(claim, now, limit, now + LEASE)
        self._vacuums.left(QUEUE, len(rows))  # each lease leaves the entry's old version
        rows = sorted(rows, key=lambda r: (-r[1], r[2]))
        entries = []
        for row in rows:
            task_id, priority, seq, doc = row[:4]
            self._seen.put(f"task:{task_id}", doc)  # the task's record came with the claim
            task = _load(TaskRun, doc) if doc is not None else None
            if follows and task is not None:
                next_doc, session_doc = row[4:]
                if task.next_step is not None and next_doc is not None:
                    self._seen.put(f"task:{task.next_step.task_id}", next_doc)
                elif session_doc is not None:
                    self._seen.put(f"session:{task.session_id}", session_doc)
            entries.append(QueueEntry(task_id, priority, now, seq, task=task, read=True))
        return entries

    async def ack(self, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        if ids:
            async with self._conn() as conn:
                await conn.execute(
                    "DELETE FROM opscore_queue WHERE task_id = ANY($1::text[]) "
                    "AND lease_until IS NOT NULL",
                    ids,
                )
            self._vacuums.left(QUEUE, len(ids))

    async def requeue(self, entries: Iterable[QueueEntry]) -> None:
        ids = [e.task_id for e in entries]
        if ids:
            async with self._conn() as conn:
                await conn.execute(
                    "UPDATE opscore_queue SET lease_until = NULL WHERE task_id = ANY($1::text[])",
                    ids,
                )
            self._vacuums.left(QUEUE, len(ids))

    async def queue_depth(self) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval("SELECT count(*) FROM opscore_queue"))

    async def oldest_ready_at(self, now: datetime) -> datetime | None:
        async with self._conn() as conn:
            value: datetime | None = await conn.fetchval(
                "SELECT min(ready_at) FROM opscore_queue WHERE ready_at <= $1",
                now,
            )
        return value

    async def next_ready_at(self, now: datetime) -> datetime | None:
        # due entries are either put back (waiting for an agent) or found by the next pass:
        # counting them woke the dispatcher every millisecond while every agent was busy
        async with self._conn() as conn:
            value: datetime | None = await conn.fetchval(
                "SELECT min(ready_at) FROM opscore_queue WHERE lease_until IS NULL"
                " AND ready_at > $1",
                now,
            )
        return value

    # --- dead letters and idempotency -------------------------------------------------------
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO opscore_dead_letters (task_id, session_id, doc) VALUES ($1, $2, $3) "
                "ON CONFLICT (task_id) DO UPDATE SET session_id = $2, doc = $3, "
                "seq = nextval(pg_get_serial_sequence('opscore_dead_letters', 'seq'))",
                entry.task_id,
                entry.session_id,
                PARSED.dump(entry),
            )

    async def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        async with self._conn() as conn:
            total = await conn.fetchval("SELECT count(*) FROM opscore_dead_letters")
            rows = await conn.fetch(
                "SELECT doc FROM opscore_dead_letters ORDER BY seq DESC LIMIT $1 OFFSET $2",
                limit,
                offset,
            )
        return Page(
            items=[_load(DeadLetter, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    async def pop_dead_letter(self, task_id: str) -> DeadLetter | None:
        async with self._conn() as conn:
            doc = await conn.fetchval(
                "DELETE FROM opscore_dead_letters WHERE task_id = $1 RETURNING doc", task_id
            )
        return _load(DeadLetter, doc) if doc is not None else None

    async def remember_idempotency_key(
        self, key: str, session_id: str, *, now: datetime, ttl: float
    ) -> str | None:
        expired = now - timedelta(seconds=ttl)
        async with self._tx() as conn:
            # insert, or take over an expired mapping; a live one is left and answered
            taken = await conn.fetchval(
                "INSERT INTO opscore_idempotency AS i (key, session_id, created) "
                "VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET session_id = $2, "
                "created = $3 WHERE i.created <= $4 RETURNING 1",
                key,
                session_id,
                now,
                expired,
            )
            if taken:
                await conn.execute(
                    "DELETE FROM opscore_idempotency WHERE created <= $1 AND key <> $2",
                    expired,
                    key,
                )
                return None
            existing: str | None = await conn.fetchval(
                "SELECT session_id FROM opscore_idempotency WHERE key = $1", key
            )
            return existing

    async def forget_idempotency_key(self, key: str) -> None:
        async with self._conn() as conn:
            await conn.execute("DELETE FROM opscore_idempotency WHERE key = $1", key)
