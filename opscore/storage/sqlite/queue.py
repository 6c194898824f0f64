"""SQLiteStorage: the task queue, dead letters and idempotency keys."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from ...models import (
    DeadLetter,
    Page,
    QueueEntry,
    TaskRun,
)
from .base import LEASE, _Base, _doc, _load
from .calls import off_loop, quick, scan

# The earliest ready-at of the entries ``when`` picks, through queue_waiting (due, ready_at):
# one seek into the entries not yet due and one into the due (an entry's 'due' is 1 once its
# ready-at has passed, which a clock set back can leave ahead of now)
_EARLIEST = (
    "SELECT (SELECT MIN(ready_at) FROM queue WHERE due = 0 AND {when}), "
    "(SELECT MIN(ready_at) FROM queue WHERE due = 1 AND {when})"
)
_OLDEST_READY = _EARLIEST.format(when="ready_at <= ?1")
_NEXT_READY = _EARLIEST.format(when="lease_until IS NULL AND ready_at > ?1")


def _earliest(row: tuple[float | None, float | None] | None) -> datetime | None:
    found = [at for at in row or () if at is not None]
    return datetime.fromtimestamp(min(found), UTC) if found else None


class QueueRecords(_Base):
    # --- queue ------------------------------------------------------------------------------
    @quick
    def enqueue(self, task_id: str, *, priority: int, ready_at: datetime) -> None:
        with self._tx() as db:
            self._put_in_queue(db, task_id, priority, ready_at)

    @quick
    def dequeue_ready(
        self, now: datetime, limit: int, *, follows: bool = False
    ) -> list[QueueEntry]:
        stamp = now.timestamp()
        with self._tx() as db:
            db.execute("UPDATE queue SET due = 1 WHERE due = 0 AND ready_at <= ?", (stamp,))
            # the due in order, with their tasks (the dispatcher needs them: one statement, not
            # a read of its own per entry); those leased out (being handed over) are passed over
            rows = db.execute(
                "SELECT q.task_id, q.priority, q.seq, t.doc FROM queue AS q "
                "INDEXED BY queue_due LEFT JOIN tasks AS t ON t.task_id = q.task_id "
                "WHERE q.due = 1 AND q.ready_at <= ? AND "
                "(q.lease_until IS NULL OR q.lease_until < ?) "
                "ORDER BY q.priority DESC, q.seq LIMIT ?",
                (stamp, stamp, limit),
            ).fetchall()
            lease = (now + LEASE).timestamp()
            db.executemany(
                "UPDATE queue SET lease_until = ? WHERE task_id = ?", [(lease, r[0]) for r in rows]
            )
        return [
            QueueEntry(
                task_id=task_id,
                priority=priority,
                ready_at=now,
                seq=seq,
                task=_load(TaskRun, doc) if doc is not None else None,
                read=True,
            )
            for task_id, priority, seq, doc in rows
        ]

    @quick
    def ack(self, task_ids: Iterable[str]) -> None:
        with self._tx() as db:
            self._acknowledge(db, task_ids)

    @quick
    def requeue(self, entries: Iterable[QueueEntry]) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE queue SET lease_until = NULL WHERE task_id = ?",
                [(e.task_id,) for e in entries],
            )

    @scan
    def queue_depth(self) -> int:
        with self._tx(write=False) as db:
            return int(db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    @scan
    def oldest_ready_at(self, now: datetime) -> datetime | None:
        stamp = now.timestamp()
        with self._tx(write=False) as db:
            row = db.execute(_OLDEST_READY, (stamp,)).fetchone()
        return _earliest(row)

    @quick
    def next_ready_at(self, now: datetime) -> datetime | None:
        # due entries are either put back (waiting for an agent) or found by the next pass:
        # counting them woke the dispatcher every millisecond while every agent was busy
        with self._tx(write=False) as db:
            row = db.execute(_NEXT_READY, (now.timestamp(),)).fetchone()
        return _earliest(row)

    # --- dead letters and idempotency -------------------------------------------------------
    @quick
    def add_dead_letter(self, entry: DeadLetter) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?)",
                (entry.task_id, self._next(db, "dead_letters"), _doc(entry)),
            )

    @scan
    def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        with self._tx(write=False) as db:
            total = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
            rows = db.execute(
                "SELECT doc FROM dead_letters ORDER BY seq DESC LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return Page(
            items=[_load(DeadLetter, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    @quick
    def pop_dead_letter(self, task_id: str) -> DeadLetter | None:
        with self._tx() as db:
            row = db.execute("SELECT doc FROM dead_letters WHERE task_id=?", (task_id,)).fetchone()
            db.execute("DELETE FROM dead_letters WHERE task_id=?", (task_id,))
        return _load(DeadLetter, row[0]) if row else None

    @off_loop
    def remember_idempotency_key(
        self, key: str, session_id: str, *, now: datetime, ttl: float
    ) -> str | None:
        stamp = now.timestamp()
        with self._tx() as db:
            row = db.execute(
                "SELECT session_id, created FROM idempotency WHERE key=?", (key,)
            ).fetchone()
            if row is not None and stamp - row[1] < ttl:
                return str(row[0])
            db.execute("DELETE FROM idempotency WHERE created < ?", (stamp - ttl,))
            db.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?)", (key, session_id, stamp)
            )
            return None

    @quick
    def forget_idempotency_key(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM idempotency WHERE key=?", (key,))
