"""SQLiteStorage: sessions and task runs (templates: ``templates.py``)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from ...models import (
    Page,
    Session,
    TaskRun,
)
from ..report_and_task import RunEnd, TaskUpdate, TaskWritten
from ..rules import ready_time, slot_released, slot_taken, task_change_applies
from .base import _Base, _doc, _load
from .calls import off_loop, quick, scan
from .schema import IN_FLIGHT_SQL, QUEUED_SQL


class RunRecords(_Base):
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
            "INSERT INTO sessions (session_id, seq, status, workflow_id, agent_id, doc, "
            "finished_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_id) DO UPDATE "
            "SET status = excluded.status, workflow_id = excluded.workflow_id, "
            "agent_id = excluded.agent_id, doc = excluded.doc, "
            "finished_at = excluded.finished_at",  # in place: see _put_agent
            (
                session.session_id,
                seq,
                session.status.value,
                session.workflow_id,
                session.agent_id,
                _doc(session),
                session.finished_at.timestamp() if session.finished_at else None,
            ),
        )

    @quick
    def save_session(self, session: Session) -> None:
        with self._tx() as db:
            self._put_session(db, session)

    @quick
    def get_session(self, session_id: str) -> Session | None:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT doc FROM sessions WHERE session_id=?", (session_id,)
            ).fetchone()
        return _load(Session, row[0]) if row else None

    @scan
    def list_sessions(
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

    @scan  # another status walks its index to the workflow's: may be long
    def oldest_session(self, *, status: str, workflow_id: str) -> Session | None:
        # queued runs (the one status admissions ask for) through their own index
        where = QUEUED_SQL if status == "queued" else "status = ?"
        args = (workflow_id,) if status == "queued" else (status, workflow_id)
        with self._tx(write=False) as db:
            row = db.execute(
                f"SELECT doc FROM sessions WHERE {where} AND workflow_id = ? ORDER BY seq LIMIT 1",
                args,
            ).fetchone()
        return _load(Session, row[0]) if row else None

    @quick
    def update_session(
        self, session_id: str, changes: dict[str, Any], *, expect: Collection[str] | None = None
    ) -> Session | None:
        with self._tx() as db:
            return self._change_session(db, session_id, changes, expect)

    def _change_session(
        self,
        db: sqlite3.Connection,
        session_id: str,
        changes: dict[str, Any],
        expect: Collection[str] | None,
    ) -> Session | None:
        """``update_session``, in the caller's transaction."""
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

    def _end_run(self, db: sqlite3.Connection, end: RunEnd | None) -> Session | None:
        """The run a completion completes in its own transaction (``TaskUpdate.ends_run``)."""
        return self._change_session(db, end.session_id, end.changes, end.expect) if end else None

    # --- tasks ------------------------------------------------------------------------------
    @quick
    def save_tasks(self, tasks: Iterable[TaskRun]) -> None:
        with self._tx() as db:
            self._put_tasks(db, tasks)

    @quick
    def save_run(
        self, session: Session, tasks: Iterable[TaskRun], *, queued: Collection[str] = ()
    ) -> None:
        tasks = list(tasks)
        with self._tx() as db:
            self._put_tasks(db, tasks)
            self._put_session(db, session)
            for task in tasks:
                if task.task_id in queued:
                    self._put_in_queue(db, task.task_id, task.priority, ready_time(task))

    def _put_tasks(self, db: sqlite3.Connection, tasks: Iterable[TaskRun]) -> None:
        for task in tasks:
            row = db.execute("SELECT seq FROM tasks WHERE task_id=?", (task.task_id,)).fetchone()
            self._put_task(db, task, row[0] if row else self._next(db, "tasks"))

    @quick
    def get_task(self, task_id: str) -> TaskRun | None:
        with self._tx(write=False) as db:
            row = db.execute("SELECT doc FROM tasks WHERE task_id=?", (task_id,)).fetchone()
        return _load(TaskRun, row[0]) if row else None

    @quick
    def session_tasks(self, session_id: str) -> list[TaskRun]:
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT doc FROM tasks WHERE session_id=? ORDER BY seq", (session_id,)
            ).fetchall()
        return [_load(TaskRun, r[0]) for r in rows]

    @quick
    def session_with_tasks(self, session_id: str) -> tuple[Session | None, list[TaskRun]]:
        with self._tx(write=False) as db:
            row = db.execute(
                "SELECT doc FROM sessions WHERE session_id=?", (session_id,)
            ).fetchone()
            rows = db.execute(
                "SELECT doc FROM tasks WHERE session_id=? ORDER BY seq", (session_id,)
            ).fetchall()
        return (_load(Session, row[0]) if row else None), [_load(TaskRun, r[0]) for r in rows]

    @quick
    def update_task(
        self,
        task_id: str,
        changes: dict[str, Any],
        *,
        expect: Collection[str] | None = None,
        attempt: int | None = None,
        enqueue_at: datetime | None = None,
        release_slot_of: str | None = None,
        claim_slot_of: str | None = None,
        ack_entry: bool = False,
    ) -> TaskRun | None:
        update = TaskUpdate(changes, expect, attempt, release_slot_of)
        with self._tx() as db:
            changed = self._change_task(db, task_id, update, enqueue_at, claim_slot_of)
            if changed is not None and ack_entry:
                self._acknowledge(db, [task_id])
            return changed

    @quick
    def update_task_and_next(self, task_id: str, update: TaskUpdate) -> TaskWritten:
        with self._tx() as db:
            task = self._change_task(db, task_id, update)
            if task is None:
                return TaskWritten(None)
            queued = self._queue_next(db, update.then)
            return TaskWritten(task, queued, self._end_run(db, update.ends_run))

    def _change_task(
        self,
        db: sqlite3.Connection,
        task_id: str,
        update: TaskUpdate,
        enqueue_at: datetime | None = None,
        claim_slot_of: str | None = None,
    ) -> TaskRun | None:
        """``update_task`` in the caller's transaction."""
        release_slot_of = update.release_slot_of
        row = db.execute("SELECT doc, seq FROM tasks WHERE task_id=?", (task_id,)).fetchone()
        if row is None:
            return None
        task = _load(TaskRun, row[0])
        if not task_change_applies(task, update.expect, update.attempt):
            return None
        if claim_slot_of is not None:  # raises before anything is written
            claimed = slot_taken(self._get_agent(db, claim_slot_of), task_id)
            if claimed is not None:
                self._put_agent(db, claimed)
        task = task.model_copy(update=update.changes)
        self._put_task(db, task, row[1])
        agent = self._get_agent(db, release_slot_of) if release_slot_of else None
        released = slot_released(agent, task_id) if agent is not None else None
        if released is not None:
            self._put_agent(db, released)
        if enqueue_at is not None:
            self._put_in_queue(db, task_id, task.priority, enqueue_at)
        return task

    @scan
    def inflight_tasks(self, due_by: datetime | None = None) -> list[TaskRun]:
        with self._tx(write=False) as db:
            if due_by is None:
                rows = db.execute(f"SELECT doc FROM tasks WHERE {IN_FLIGHT_SQL}").fetchall()
            else:
                rows = db.execute(
                    "SELECT doc FROM tasks WHERE sweep_at <= ?", (due_by.timestamp(),)
                ).fetchall()
        return [_load(TaskRun, r[0]) for r in rows]

    @off_loop
    def prune_finished(
        self, *, finished_before: datetime | None, keep: int, batch: int = 500
    ) -> int:
        finished = "('completed', 'failed', 'cancelled')"
        with self._tx() as db:
            rows = db.execute(
                f"""SELECT session_id FROM sessions WHERE status IN {finished} AND (
                      seq NOT IN (SELECT seq FROM sessions WHERE status IN {finished}
                                  ORDER BY seq DESC LIMIT ?)
                      OR finished_at < ?)
                    LIMIT ?""",
                (keep, finished_before.timestamp() if finished_before else None, batch),
            ).fetchall()
            ids = [r[0] for r in rows]
            if ids:
                marks = ",".join("?" * len(ids))
                db.execute(
                    f"DELETE FROM dead_letters WHERE json_extract(doc, '$.session_id') IN ({marks})",
                    ids,
                )
                db.execute(f"DELETE FROM tasks WHERE session_id IN ({marks})", ids)
                db.execute(f"DELETE FROM sessions WHERE session_id IN ({marks})", ids)
        return len(ids)
