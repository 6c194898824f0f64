"""Shared plumbing: the connections, the schema and its migrations, and JSON helpers.

Embedded durable store: one SQLite file in WAL mode, no server.

Records are JSON documents beside the columns that queries filter or sort on. Every method is
one short transaction, so each is atomic within the process; ``BEGIN IMMEDIATE`` makes the
compare-and-set methods atomic against other processes sharing the file too. WAL with
``synchronous=NORMAL`` survives a killed process (SIGKILL) without losing committed work.

Two connections, so that nothing the store waits for stalls the service (``calls``):

- Point calls (`quick`: a row or two, the hot path of every task) run at once on the event
  loop, on a connection that never waits: its busy timeout is zero and it never checkpoints.
- Everything that may wait runs on the store's own thread (``worker``): scans, batch deletes,
  checkpoints (every `CHECKPOINT_EVERY` writes on the loop), and a point call that found the
  file locked by another writer (run again there, where it waits up to `BUSY_TIMEOUT`).
  Calls that queue up there share one transaction, each in its own savepoint (group commit).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from ...errors import StorageError
from ...models import Agent, TaskRun
from ..fleet import FleetView
from ..history_trims import HistoryTrims
from ..parsed import PARSED
from ..report_and_task import QueuedNext, next_queued
from .calls import alone, on_loop_error, scan
from .fleet import FleetChanges
from .schema import SCHEMA, migrate, sweep_at
from .worker import GroupCommitThread, storage_error

M = TypeVar("M", bound=BaseModel)
LEASE = timedelta(seconds=30)
CHECKPOINT_EVERY = 500  # writes on the loop between two checkpoints on the thread
BUSY_TIMEOUT = 10  # seconds a call on the store's thread waits for another writer
_COUNT = "INSERT INTO counters VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1"
_COUNT_RETURNING = _COUNT + " RETURNING value"
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)


def path_from_url(url: str) -> Path:
    """``sqlite:///relative/opscore.db`` or ``sqlite:////absolute/opscore.db`` (as SQLAlchemy)."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or len(rest) < 2:
        raise StorageError(f"SQLite URL needs a file path, e.g. sqlite:///opscore.db (got {url})")
    return Path(rest[1:])


def _doc(model: BaseModel) -> str:
    return PARSED.dump(model)


def _load(model: type[M], doc: str) -> M:
    return PARSED.load(model, doc)


@contextmanager
def _transaction(
    conn: sqlite3.Connection | None,
    write: bool,
    error: Callable[[sqlite3.Error], Exception],
) -> Iterator[sqlite3.Connection]:
    """``conn`` inside a transaction of its own, rolled back on any error; a SQLite error
    leaves as ``error(exc)``. On the loop's connection that is `FileLockedError` when another
    writer holds the lock: raised before anything was written."""
    if conn is None:
        raise StorageError("SQLite store is not open")
    try:
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        yield conn
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise error(exc) from exc
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# Pages each connection keeps in memory, in KiB. SQLite's default is 2 MiB: past a few
# thousand runs the tasks' b-trees no longer fit, and writes read their pages back from the
# file (over 6,000 runs of `bench.stores`, 64 MiB gave 7% more workflows/s for 7% less CPU
# per workflow: `bench.ab`, three rounds).
CACHE_KIB = 64 * 1024


class _Base:
    """``Storage`` on one SQLite file (``sqlite:///path/to/opscore.db``)."""

    writes_together = False  # one writer thread takes them in turn

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None  # the store's thread's
        self._fleet = FleetView()  # the agents as last read, parsed (storage/fleet.py)
        self._fleet_changes = FleetChanges()  # and who wrote which since (sqlite/fleet.py)
        self._history_trims = HistoryTrims()  # which reports trim their agent's history
        self._lock = threading.RLock()
        self._loop_conn: sqlite3.Connection | None = None  # point calls on the event loop
        self._loop_lock = threading.Lock()  # in case two event loops share the store
        self._loop_writes = 0
        self._worker = GroupCommitThread(lambda: self._conn)

    # --- plumbing ---------------------------------------------------------------------------
    @alone
    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect(BUSY_TIMEOUT)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)
            self._conn = conn
            self._migrate()
            on_loop = self._connect(0)  # never waits: a locked file sends the call here
            on_loop.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints sync: they run here
            self._loop_conn = on_loop
            self._fleet_changes.forget()  # a new connection: its first read is whole
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"Cannot open SQLite store {self.path}: {exc}") from exc

    def _connect(self, timeout: float) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=timeout
        )
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        return conn

    def _migrate(self) -> None:
        with self._tx() as db:
            migrate(db, self.path)

    async def close(self) -> None:
        await self._close_connection()
        worker, self._worker = self._worker, GroupCommitThread(lambda: self._conn)
        worker.stop()  # a later open() gets the fresh one

    @alone
    def _close_connection(self) -> None:
        with self._loop_lock:
            if self._loop_conn is not None:
                self._loop_conn.close()
                self._loop_conn = None
        with self._lock:
            if self._conn is not None:
                self._conn.close()  # the last connection out checkpoints the whole WAL
                self._conn = None

    def _checkpoint(self) -> None:
        """Copy the WAL's pages into the file and start the WAL over, on the store's thread
        (it syncs the disk). RESTART holds the write lock while it runs, so the WAL can start
        over even under a steady stream of writes (PASSIVE never catches up with them);
        writes on the loop meanwhile find the lock taken and queue here behind it."""
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()

    def set_queue_listener(self, listener: Callable[[], None]) -> None:
        """Nothing to listen to: processes sharing the file find each other's work at their
        next dispatch interval."""

    @scan
    def ping(self) -> None:
        """A read on the store's thread: it answers only if that thread does."""
        with self._tx(write=False) as db:
            db.execute("SELECT 1").fetchone()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A connection inside a transaction: on the event loop, the loop's own (`quick`);
        on the store's thread, the group's (the worker's savepoint keeps this call's writes
        its own) or, for a call run alone, one of its own."""
        if not self._worker.is_current():
            with self._loop_lock, _transaction(self._loop_conn, write, on_loop_error) as conn:
                yield conn
            if write:
                self._loop_writes += 1
                if self._loop_writes % CHECKPOINT_EVERY == 0:
                    self._worker.background(self._checkpoint)
            return
        with self._lock:
            if self._worker.in_group and self._conn is not None:
                try:
                    yield self._conn
                except sqlite3.Error as exc:
                    raise storage_error(exc) from exc
                return
            with _transaction(self._conn, write, storage_error) as conn:
                yield conn

    # The _put_* methods write a changed record in place (an upsert), not as INSERT OR REPLACE:
    # that deletes the row and inserts it anew, rewriting every index entry and rebalancing
    # the pages around it. A task's move wrote 8.9 pages to the WAL that way, 2.8 in place.
    # Columns that never change for a record (a task's run and place) are left out.
    def _put_agent(self, db: sqlite3.Connection, agent: Agent) -> None:
        self._fleet_changes.wrote(agent.agent_id)
        db.execute(
            "INSERT INTO agents VALUES (?, ?, ?, ?) ON CONFLICT (agent_id) DO UPDATE SET "
            "state = excluded.state, last_seen = excluded.last_seen, doc = excluded.doc",
            (agent.agent_id, agent.state, agent.last_seen.timestamp(), _doc(agent)),
        )

    def _put_task(self, db: sqlite3.Connection, task: TaskRun, seq: int) -> None:
        db.execute(
            "INSERT INTO tasks VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (task_id) DO UPDATE SET "
            "status = excluded.status, doc = excluded.doc, sweep_at = excluded.sweep_at",
            (
                task.task_id,
                task.session_id,
                seq,
                str(task.status.value),
                _doc(task),
                sweep_at(task),
            ),
        )

    def _queue_next(self, db: sqlite3.Connection, then: QueuedNext | None) -> TaskRun | None:
        """The next step a completion queues in its own transaction (``TaskUpdate.then``)."""
        if then is None:
            return None
        row = db.execute("SELECT doc, seq FROM tasks WHERE task_id=?", (then.task_id,)).fetchone()
        queued = next_queued(then, _load(TaskRun, row[0]) if row else None)
        if row is not None and queued is not None:
            self._put_task(db, queued, row[1])
            self._put_in_queue(db, queued.task_id, queued.priority, then.ready_at)
        return queued

    def _get_agent(self, db: sqlite3.Connection, agent_id: str) -> Agent | None:
        row = db.execute("SELECT doc FROM agents WHERE agent_id=?", (agent_id,)).fetchone()
        return _load(Agent, row[0]) if row else None

    def _put_in_queue(
        self, db: sqlite3.Connection, task_id: str, priority: int, ready_at: datetime
    ) -> None:
        """Queue (or re-queue) a task inside the caller's transaction (due at once when its
        ready-at has passed)."""
        at = ready_at.timestamp()
        db.execute(
            "INSERT INTO queue (task_id, priority, ready_at, seq, lease_until, due) "
            "VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT (task_id) DO UPDATE SET "
            "priority = excluded.priority, ready_at = excluded.ready_at, seq = excluded.seq, "
            "lease_until = NULL, due = excluded.due",
            (task_id, priority, at, self._next(db, "queue"), int(at <= time.time())),
        )

    def _acknowledge(self, db: sqlite3.Connection, task_ids: Iterable[str]) -> None:
        """``ack`` inside the caller's transaction: the entries still leased go."""
        db.executemany(
            "DELETE FROM queue WHERE task_id = ? AND lease_until IS NOT NULL",
            [(t,) for t in task_ids],
        )

    def _next(self, db: sqlite3.Connection, name: str) -> int:
        """The counter's next value: one statement where SQLite has RETURNING (3.35), two
        before (taken for every task a run writes and every entry queued)."""
        if _RETURNING:
            return int(db.execute(_COUNT_RETURNING, (name,)).fetchone()[0])
        db.execute(_COUNT, (name,))
        return int(db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()[0])
