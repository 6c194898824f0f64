"""Embedded durable store: one SQLite file in WAL mode, no server.

Records are JSON documents beside the columns that queries filter or sort on. Every method is
one short transaction on one connection guarded by a lock, so each is atomic within the process;
``BEGIN IMMEDIATE`` makes the compare-and-set methods atomic against other processes sharing
the file too. WAL with ``synchronous=NORMAL`` survives a killed process (SIGKILL) without losing
committed work. Queries are microseconds on local disk, so they run on the event loop thread.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from ..errors import StorageError
from ..models import (
    Agent,
    DeadLetter,
    Page,
    QueueEntry,
    Session,
    StateRecord,
    TaskRun,
    WorkflowTemplate,
)
from .rules import apply_state

M = TypeVar("M", bound=BaseModel)
SCHEMA_VERSION = 1
LEASE = timedelta(seconds=30)
_INFLIGHT = ("dispatched", "running")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY, state TEXT, last_seen REAL NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, agent_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS state_history_agent ON state_history (agent_id, id);
CREATE TABLE IF NOT EXISTS workflows (
    id TEXT NOT NULL, version TEXT NOT NULL, seq INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (id, version));
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, status TEXT NOT NULL,
    workflow_id TEXT, agent_id TEXT, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_seq ON sessions (seq);
CREATE INDEX IF NOT EXISTS sessions_status ON sessions (status, seq);
CREATE TABLE IF NOT EXISTS tasks (
    task_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, seq INTEGER NOT NULL,
    status TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS tasks_session ON tasks (session_id, seq);
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE TABLE IF NOT EXISTS queue (
    task_id TEXT PRIMARY KEY, priority INTEGER NOT NULL, ready_at REAL NOT NULL,
    seq INTEGER NOT NULL, lease_until REAL);
CREATE INDEX IF NOT EXISTS queue_ready ON queue (ready_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    task_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, session_id TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def path_from_url(url: str) -> Path:
    """``sqlite:///relative/opscore.db`` or ``sqlite:////absolute/opscore.db`` (as SQLAlchemy)."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or len(rest) < 2:
        raise StorageError(f"SQLite URL needs a file path, e.g. sqlite:///opscore.db (got {url})")
    return Path(rest[1:])


def _doc(model: BaseModel) -> str:
    return model.model_dump_json()


def _load(model: type[M], doc: str) -> M:
    return model.model_validate_json(doc)


class SQLiteStorage:
    """``Storage`` on one SQLite file (``sqlite:///path/to/opscore.db``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.RLock()

    # --- plumbing ---------------------------------------------------------------------------
    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=10
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(_SCHEMA)
            self._conn = conn
            self._migrate()
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"Cannot open SQLite store {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = int(row[0]) if row else 0
            if version > SCHEMA_VERSION:
                raise StorageError(
                    f"{self.path} has schema {version}, newer than this Ops-Core ({SCHEMA_VERSION})"
                )
            # Future migrations go here, one `if version < N:` block each.
            db.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    async def ping(self) -> None:
        with self._tx() as db:
            db.execute("SELECT 1").fetchone()

    @contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise StorageError("SQLite store is not open")
            conn = self._conn
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield conn
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise StorageError(f"SQLite error: {exc}") from exc
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _next(self, db: sqlite3.Connection, name: str) -> int:
        db.execute(
            "INSERT INTO counters VALUES (?, 1) ON CONFLICT(name) DO UPDATE SET value = value + 1",
            (name,),
        )
        return int(db.execute("SELECT value FROM counters WHERE name=?", (name,)).fetchone()[0])

    # --- agents -----------------------------------------------------------------------------
    def _put_agent(self, db: sqlite3.Connection, agent: Agent) -> None:
        db.execute(
            "INSERT OR REPLACE INTO agents VALUES (?, ?, ?, ?)",
            (agent.agent_id, agent.state, agent.last_seen.timestamp(), _doc(agent)),
        )

    def _get_agent(self, db: sqlite3.Connection, agent_id: str) -> Agent | None:
        row = db.execute("SELECT doc FROM agents WHERE agent_id=?", (agent_id,)).fetchone()
        return _load(Agent, row[0]) if row else None

    async def create_agent(self, agent: Agent) -> Agent | None:
        with self._tx() as db:
            existing = self._get_agent(db, agent.agent_id)
            if existing is None:
                self._put_agent(db, agent)
            return existing

    async def save_agent(self, agent: Agent) -> None:
        with self._tx() as db:
            self._put_agent(db, agent)

    async def get_agent(self, agent_id: str) -> Agent | None:
        with self._tx(write=False) as db:
            return self._get_agent(db, agent_id)

    async def list_agents(
        self, *, state: str | None, capability: str | None, offset: int, limit: int
    ) -> Page[Agent]:
        where, args = ["1=1"], []
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if capability is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(doc, '$.capabilities') WHERE value = ?)")
            args.append(capability)
        clause = " AND ".join(where)
        with self._tx(write=False) as db:
            total = db.execute(f"SELECT COUNT(*) FROM agents WHERE {clause}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT doc FROM agents WHERE {clause} ORDER BY agent_id LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return Page(
            items=[_load(Agent, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    async def delete_agent(self, agent_id: str) -> Agent | None:
        with self._tx() as db:
            agent = self._get_agent(db, agent_id)
            db.execute("DELETE FROM agents WHERE agent_id=?", (agent_id,))
            db.execute("DELETE FROM state_history WHERE agent_id=?", (agent_id,))
            return agent

    async def update_agent(self, agent_id: str, changes: dict[str, Any]) -> Agent | None:
        with self._tx() as db:
            agent = self._get_agent(db, agent_id)
            if agent is None:
                return None
            agent = agent.model_copy(update=changes)
            self._put_agent(db, agent)
            return agent

    async def record_state(self, record: StateRecord, *, history_limit: int) -> tuple[Agent, bool]:
        with self._tx() as db:
            agent, duplicate = apply_state(self._get_agent(db, record.agent_id), record)
            if duplicate:
                return agent, True
            self._put_agent(db, agent)
            db.execute(
                "INSERT INTO state_history (agent_id, doc) VALUES (?, ?)",
                (agent.agent_id, _doc(record)),
            )
            db.execute(
                "DELETE FROM state_history WHERE agent_id = ? AND id <= (SELECT id FROM "
                "state_history WHERE agent_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (agent.agent_id, agent.agent_id, history_limit),
            )
            return agent, False

    async def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        with self._tx(write=False) as db:
            total = db.execute(
                "SELECT COUNT(*) FROM state_history WHERE agent_id=?", (agent_id,)
            ).fetchone()[0]
            rows = db.execute(
                "SELECT doc FROM state_history WHERE agent_id=? ORDER BY id DESC LIMIT ? OFFSET ?",
                (agent_id, limit, offset),
            ).fetchall()
        return Page(
            items=[_load(StateRecord, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    async def available_agents(self, states: Collection[str]) -> list[Agent]:
        marks = ",".join("?" * len(states))
        with self._tx(write=False) as db:
            rows = db.execute(f"SELECT doc FROM agents WHERE state IN ({marks})", list(states))
            agents = [_load(Agent, r[0]) for r in rows.fetchall()]
        return [a for a in agents if len(a.active_tasks) < a.max_concurrency]

    async def stale_agents(self, *, seen_before: datetime, exclude_state: str) -> list[Agent]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT doc FROM agents WHERE last_seen < ? AND (state IS NULL OR state != ?)",
                (seen_before.timestamp(), exclude_state),
            ).fetchall()
        return [_load(Agent, r[0]) for r in rows]

    async def claim_agent_slot(self, agent_id: str, task_id: str) -> bool:
        with self._tx() as db:
            agent = self._get_agent(db, agent_id)
            if agent is None or len(agent.active_tasks) >= agent.max_concurrency:
                return False
            if task_id not in agent.active_tasks:
                self._put_agent(
                    db, agent.model_copy(update={"active_tasks": [*agent.active_tasks, task_id]})
                )
            return True

    async def release_agent_slot(self, agent_id: str, task_id: str) -> None:
        with self._tx() as db:
            agent = self._get_agent(db, agent_id)
            if agent is not None and task_id in agent.active_tasks:
                remaining = [t for t in agent.active_tasks if t != task_id]
                self._put_agent(db, agent.model_copy(update={"active_tasks": remaining}))

    # --- templates --------------------------------------------------------------------------
    async def save_workflow(self, template: WorkflowTemplate) -> WorkflowTemplate | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT doc FROM workflows WHERE id=? AND version=?",
                (template.id, template.version),
            ).fetchone()
            if row:
                return _load(WorkflowTemplate, row[0])
            db.execute(
                "INSERT INTO workflows VALUES (?, ?, ?, ?)",
                (template.id, template.version, self._next(db, "workflows"), _doc(template)),
            )
            return None

    async def get_workflow(self, workflow_id: str, version: str | None) -> WorkflowTemplate | None:
        with self._tx(write=False) as db:
            if version is None:
                row = db.execute(
                    "SELECT doc FROM workflows WHERE id=? ORDER BY seq DESC LIMIT 1", (workflow_id,)
                ).fetchone()
            else:
                row = db.execute(
                    "SELECT doc FROM workflows WHERE id=? AND version=?", (workflow_id, version)
                ).fetchone()
        return _load(WorkflowTemplate, row[0]) if row else None

    async def list_workflows(self, *, offset: int, limit: int) -> Page[WorkflowTemplate]:
        latest = (
            "SELECT w.doc FROM workflows w WHERE w.seq = (SELECT MAX(seq) FROM workflows x "
            "WHERE x.id = w.id)"
        )
        with self._tx(write=False) as db:
            total = db.execute("SELECT COUNT(DISTINCT id) FROM workflows").fetchone()[0]
            rows = db.execute(
                f"{latest} ORDER BY w.id LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return Page(
            items=[_load(WorkflowTemplate, r[0]) for r in rows],
            total=total,
            offset=offset,
            limit=limit,
        )

    async def workflow_versions(self, workflow_id: str) -> list[str]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT version FROM workflows WHERE id=? ORDER BY seq", (workflow_id,)
            ).fetchall()
        return [r[0] for r in rows]

    async def delete_workflow(self, workflow_id: str, version: str | None) -> int:
        with self._tx() as db:
            if version is None:
                cursor = db.execute("DELETE FROM workflows WHERE id=?", (workflow_id,))
            else:
                cursor = db.execute(
                    "DELETE FROM workflows WHERE id=? AND version=?", (workflow_id, version)
                )
            return cursor.rowcount

    # --- sessions ---------------------------------------------------------------------------
    def _put_session(
        self, db: sqlite3.Connection, session: Session, seq: int | None = None
    ) -> None:
        if seq is None:
            row = db.execute(
                "SELECT seq FROM sessions WHERE session_id=?", (session.session_id,)
            ).fetchone()
            seq = row[0] if row else self._next(db, "sessions")
        db.execute(
            "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?)",
            (
                session.session_id,
                seq,
                session.status.value,
                session.workflow_id,
                session.agent_id,
                _doc(session),
            ),
        )

    async def save_session(self, session: Session) -> None:
        with self._tx() as db:
            self._put_session(db, session)

    async def get_session(self, session_id: str) -> Session | None:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT doc FROM sessions WHERE session_id=?", (session_id,)
            ).fetchone()
        return _load(Session, row[0]) if row else None

    async def list_sessions(
        self,
        *,
        status: str | None,
        workflow_id: str | None,
        agent_id: str | None,
        offset: int,
        limit: int,
    ) -> Page[Session]:
        where, args = ["1=1"], []
        for column, value in (
            ("status", status),
            ("workflow_id", workflow_id),
            ("agent_id", agent_id),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = " AND ".join(where)
        with self._tx(write=False) as db:
            total = db.execute(f"SELECT COUNT(*) FROM sessions WHERE {clause}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT doc FROM sessions WHERE {clause} ORDER BY seq DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return Page(
            items=[_load(Session, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    async def update_session(
        self, session_id: str, changes: dict[str, Any], *, expect: Collection[str] | None = None
    ) -> Session | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT doc, seq FROM sessions WHERE session_id=?", (session_id,)
            ).fetchone()
            if row is None:
                return None
            session = _load(Session, row[0])
            if expect is not None and session.status not in expect:
                return None
            session = session.model_copy(update=changes)
            self._put_session(db, session, row[1])
            return session

    # --- tasks ------------------------------------------------------------------------------
    def _put_task(self, db: sqlite3.Connection, task: TaskRun, seq: int) -> None:
        db.execute(
            "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?)",
            (task.task_id, task.session_id, seq, str(task.status.value), _doc(task)),
        )

    async def save_tasks(self, tasks: Iterable[TaskRun]) -> None:
        with self._tx() as db:
            for task in tasks:
                row = db.execute(
                    "SELECT seq FROM tasks WHERE task_id=?", (task.task_id,)
                ).fetchone()
                self._put_task(db, task, row[0] if row else self._next(db, "tasks"))

    async def get_task(self, task_id: str) -> TaskRun | None:
        with self._tx(write=False) as db:
            row = db.execute("SELECT doc FROM tasks WHERE task_id=?", (task_id,)).fetchone()
        return _load(TaskRun, row[0]) if row else None

    async def session_tasks(self, session_id: str) -> list[TaskRun]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT doc FROM tasks WHERE session_id=? ORDER BY seq", (session_id,)
            ).fetchall()
        return [_load(TaskRun, r[0]) for r in rows]

    async def update_task(
        self,
        task_id: str,
        changes: dict[str, Any],
        *,
        expect: Collection[str] | None = None,
        attempt: int | None = None,
    ) -> TaskRun | None:
        with self._tx() as db:
            row = db.execute("SELECT doc, seq FROM tasks WHERE task_id=?", (task_id,)).fetchone()
            if row is None:
                return None
            task = _load(TaskRun, row[0])
            if expect is not None and task.status not in expect:
                return None
            if attempt is not None and task.attempts != attempt:
                return None
            task = task.model_copy(update=changes)
            self._put_task(db, task, row[1])
            return task

    async def inflight_tasks(self) -> list[TaskRun]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT doc FROM tasks WHERE status IN (?, ?)", _INFLIGHT).fetchall()
        return [_load(TaskRun, r[0]) for r in rows]

    # --- queue ------------------------------------------------------------------------------
    async def enqueue(self, task_id: str, *, priority: int, ready_at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO queue VALUES (?, ?, ?, ?, NULL)",
                (task_id, priority, ready_at.timestamp(), self._next(db, "queue")),
            )

    async def dequeue_ready(self, now: datetime, limit: int) -> list[QueueEntry]:
        stamp = now.timestamp()
        with self._tx() as db:
            rows = db.execute(
                "SELECT task_id, priority, seq FROM queue WHERE ready_at <= ? AND "
                "(lease_until IS NULL OR lease_until < ?) ORDER BY priority DESC, seq LIMIT ?",
                (stamp, stamp, limit),
            ).fetchall()
            lease = (now + LEASE).timestamp()
            db.executemany(
                "UPDATE queue SET lease_until = ? WHERE task_id = ?", [(lease, r[0]) for r in rows]
            )
        return [QueueEntry(task_id=r[0], priority=r[1], ready_at=now, seq=r[2]) for r in rows]

    async def ack(self, task_ids: Iterable[str]) -> None:
        with self._tx() as db:
            db.executemany(
                "DELETE FROM queue WHERE task_id = ? AND lease_until IS NOT NULL",
                [(t,) for t in task_ids],
            )

    async def requeue(self, entries: Iterable[QueueEntry]) -> None:
        with self._tx() as db:
            db.executemany(
                "UPDATE queue SET lease_until = NULL WHERE task_id = ?",
                [(e.task_id,) for e in entries],
            )

    async def queue_depth(self) -> int:
        with self._tx(write=False) as db:
            return int(db.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    async def next_ready_at(self) -> datetime | None:
        with self._tx(write=False) as db:
            row = db.execute("SELECT MIN(ready_at) FROM queue WHERE lease_until IS NULL").fetchone()
        if row is None or row[0] is None:
            return None
        return datetime.fromtimestamp(row[0], UTC)

    # --- dead letters and idempotency -------------------------------------------------------
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO dead_letters VALUES (?, ?, ?)",
                (entry.task_id, self._next(db, "dead_letters"), _doc(entry)),
            )

    async def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        with self._tx(write=False) as db:
            total = db.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
            rows = db.execute(
                "SELECT doc FROM dead_letters ORDER BY seq DESC LIMIT ? OFFSET ?", (limit, offset)
            ).fetchall()
        return Page(
            items=[_load(DeadLetter, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    async def pop_dead_letter(self, task_id: str) -> DeadLetter | None:
        with self._tx() as db:
            row = db.execute("SELECT doc FROM dead_letters WHERE task_id=?", (task_id,)).fetchone()
            db.execute("DELETE FROM dead_letters WHERE task_id=?", (task_id,))
        return _load(DeadLetter, row[0]) if row else None

    async def remember_idempotency_key(
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

    async def forget_idempotency_key(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM idempotency WHERE key=?", (key,))
