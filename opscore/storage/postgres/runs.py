"""PostgresStorage: templates, sessions and task runs."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from ...models import Page, Session, TaskRun, WorkflowTemplate
from ..parsed import PARSED
from ..rules import ready_time, task_change_applies
from .base import _FINISHED, _INFLIGHT, CHANNEL, Write, _Base, _load, doc_unless, queued_after

_PUT_SESSION = (
    "INSERT INTO opscore_sessions (session_id, status, workflow_id, agent_id, finished_at, doc) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (session_id) DO UPDATE SET status = $2, "
    "workflow_id = $3, agent_id = $4, finished_at = $5, doc = $6"
)
_READ_SESSION = "SELECT doc FROM opscore_sessions WHERE session_id = $1"
# the status as text, not a parameter: a generic plan can then use the partial index over the
# queued runs (migration 7), which a plan for any status cannot
_OLDEST_QUEUED = (
    "SELECT doc FROM opscore_sessions WHERE status = 'queued' AND workflow_id = $1 "
    "ORDER BY seq LIMIT 1"
)
_OLDEST = (
    "SELECT doc FROM opscore_sessions WHERE status = $1 AND workflow_id = $2 ORDER BY seq LIMIT 1"
)
# (as every compare-and-set write: whether it wrote, and else the row's current document)
_SET_SESSION = f"""
WITH changed AS (
    UPDATE opscore_sessions SET status = $2, workflow_id = $3, agent_id = $4,
        finished_at = $5, doc = $6 WHERE session_id = $1 AND doc = $7 RETURNING 1)
SELECT (SELECT 1 FROM changed),
    {doc_unless("EXISTS (SELECT 1 FROM changed)", "opscore_sessions", "session_id", "$1")}
"""
_READ_TASK = "SELECT doc FROM opscore_tasks WHERE task_id = $1"
_SESSION_WITH_TASKS = """
(SELECT 's', doc, 0::bigint AS seq FROM opscore_sessions WHERE session_id = $1)
UNION ALL
(SELECT 't', doc, seq FROM opscore_tasks WHERE session_id = $1)
ORDER BY 1, 3
"""
_SET_TASK = f"""
WITH changed AS (
    UPDATE opscore_tasks SET status = $2, doc = $3 WHERE task_id = $1 AND doc = $4 RETURNING 1)
SELECT (SELECT 1 FROM changed),
    {doc_unless("EXISTS (SELECT 1 FROM changed)", "opscore_tasks", "task_id", "$1")}
"""
# The same compare-and-set, and the task queued in the same statement (as queue.py's enqueue,
# with its NOTIFY), only if the row still held the guessed document ($8).
_SET_AND_QUEUE_TASK = f"""
WITH moved AS (
    UPDATE opscore_tasks SET status = $2, doc = $3 WHERE task_id = $1 AND doc = $8
    RETURNING task_id),{queued_after("moved", 4, 6)}
SELECT (SELECT count(*) FROM queued_woken) > 0,
    {doc_unless("EXISTS (SELECT 1 FROM moved)", "opscore_tasks", "task_id", "$1")}
"""
_PUT_TASK = (
    "INSERT INTO opscore_tasks (task_id, session_id, status, doc) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (task_id) DO UPDATE SET session_id = $2, status = $3, doc = $4"
)

# A run as it starts (save_run), in one statement: its tasks ($7-$10: ids, sessions, statuses,
# documents, inserted in that order, so they keep it), its session ($1-$6 as _PUT_SESSION),
# and the tasks queued with it ($11-$13: ids, priorities, ready times; as queue.py's enqueue,
# with its NOTIFY on $14 from $15 when any was queued).
_PUT_RUN = f"""
WITH tasks AS (
    INSERT INTO opscore_tasks (task_id, session_id, status, doc)
    SELECT t.id, t.session_id, t.status, t.doc
    FROM unnest($7::text[], $8::text[], $9::text[], $10::text[])
        WITH ORDINALITY AS t(id, session_id, status, doc, n)
    ORDER BY t.n
    ON CONFLICT (task_id) DO UPDATE SET session_id = EXCLUDED.session_id,
        status = EXCLUDED.status, doc = EXCLUDED.doc
    RETURNING 1),
session AS ({_PUT_SESSION} RETURNING 1),
queued AS (
    INSERT INTO opscore_queue (task_id, priority, ready_at, seq, lease_until)
    SELECT q.id, q.priority, q.ready_at, nextval('opscore_queue_seq'), NULL
    FROM unnest($11::text[], $12::integer[], $13::timestamptz[])
        WITH ORDINALITY AS q(id, priority, ready_at, n)
    ORDER BY q.n
    ON CONFLICT (task_id) DO UPDATE SET priority = EXCLUDED.priority,
        ready_at = EXCLUDED.ready_at, seq = nextval('opscore_queue_seq'), lease_until = NULL
    RETURNING 1)
SELECT pg_notify($14, $15) WHERE EXISTS (SELECT 1 FROM queued)
"""


def _session_row(s: Session) -> tuple[Any, ...]:
    return (
        s.session_id,
        s.status.value,
        s.workflow_id,
        s.agent_id,
        s.finished_at,
        PARSED.dump(s),
    )


def _task_row(t: TaskRun) -> tuple[Any, ...]:
    return (t.task_id, t.session_id, t.status.value, PARSED.dump(t))


class RunRecords(_Base):
    # --- templates --------------------------------------------------------------------------
    async def save_workflow(self, template: WorkflowTemplate) -> WorkflowTemplate | None:
        async with self._tx() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO opscore_workflows (id, version, doc) VALUES ($1, $2, $3) "
                "ON CONFLICT DO NOTHING RETURNING 1",
                template.id,
                template.version,
                PARSED.dump(template),
            )
            if inserted:
                return None
            doc = await conn.fetchval(
                "SELECT doc FROM opscore_workflows WHERE id = $1 AND version = $2",
                template.id,
                template.version,
            )
        return _load(WorkflowTemplate, doc) if doc is not None else None

    async def get_workflow(self, workflow_id: str, version: str | None) -> WorkflowTemplate | None:
        async with self._conn() as conn:
            doc = await conn.fetchval(
                "SELECT doc FROM opscore_workflows WHERE id = $1 "
                "AND ($2::text IS NULL OR version = $2) ORDER BY seq DESC LIMIT 1",
                workflow_id,
                version,
            )
        return _load(WorkflowTemplate, doc) if doc is not None else None

    async def list_workflows(self, *, offset: int, limit: int) -> Page[WorkflowTemplate]:
        async with self._conn() as conn:
            total = await conn.fetchval("SELECT count(DISTINCT id) FROM opscore_workflows")
            rows = await conn.fetch(
                "SELECT DISTINCT ON (id) doc FROM opscore_workflows ORDER BY id, seq DESC "
                "LIMIT $1 OFFSET $2",
                limit,
                offset,
            )
        return Page(
            items=[_load(WorkflowTemplate, r[0]) for r in rows],
            total=total,
            offset=offset,
            limit=limit,
        )

    async def workflow_versions(self, workflow_id: str) -> list[str]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT version FROM opscore_workflows WHERE id = $1 ORDER BY seq", workflow_id
            )
        return [r[0] for r in rows]

    async def delete_workflow(self, workflow_id: str, version: str | None) -> int:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "DELETE FROM opscore_workflows WHERE id = $1 "
                "AND ($2::text IS NULL OR version = $2) RETURNING 1",
                workflow_id,
                version,
            )
        return len(rows)

    # --- sessions ---------------------------------------------------------------------------
    async def save_session(self, session: Session) -> None:
        row = _session_row(session)
        async with self._conn() as conn:
            await conn.execute(_PUT_SESSION, *row)
        self._seen.put(f"session:{session.session_id}", row[-1])

    async def get_session(self, session_id: str) -> Session | None:
        async with self._conn() as conn:
            doc = await conn.fetchval(_READ_SESSION, session_id)
        self._seen.put(f"session:{session_id}", doc)
        return _load(Session, doc) if doc is not None else None

    async def list_sessions(
        self,
        *,
        status: str | None,
        workflow_id: str | None,
        agent_id: str | None,
        offset: int,
        limit: int,
    ) -> Page[Session]:
        where = (
            "($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR workflow_id = $2) "
            "AND ($3::text IS NULL OR agent_id = $3)"
        )
        async with self._conn() as conn:
            total = await conn.fetchval(
                f"SELECT count(*) FROM opscore_sessions WHERE {where}",
                status,
                workflow_id,
                agent_id,
            )
            rows = await conn.fetch(
                f"SELECT doc FROM opscore_sessions WHERE {where} "
                "ORDER BY seq DESC LIMIT $4 OFFSET $5",
                status,
                workflow_id,
                agent_id,
                limit,
                offset,
            )
        return Page(
            items=[_load(Session, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    async def oldest_session(self, *, status: str, workflow_id: str) -> Session | None:
        async with self._conn() as conn:
            if status == "queued":  # the one admissions ask for: migration 7's index
                doc = await conn.fetchval(_OLDEST_QUEUED, workflow_id)
            else:
                doc = await conn.fetchval(_OLDEST, status, workflow_id)
        return _load(Session, doc) if doc is not None else None

    async def update_session(
        self, session_id: str, changes: dict[str, Any], *, expect: Collection[str] | None = None
    ) -> Session | None:
        def decide(doc: str | None) -> tuple[Write, Session | None]:
            if doc is None:
                return None, None
            session = _load(Session, doc)
            if expect is not None and session.status not in expect:
                return None, None
            session = session.model_copy(update=changes)
            row = _session_row(session)
            return (_SET_SESSION, row, row[-1]), session

        return await self._cas(f"session:{session_id}", _READ_SESSION, session_id, decide)

    # --- tasks ------------------------------------------------------------------------------
    async def save_tasks(self, tasks: Iterable[TaskRun]) -> None:
        rows = [_task_row(t) for t in tasks]
        if rows:
            async with self._tx() as conn:
                await conn.executemany(_PUT_TASK, rows)
            for row in rows:
                self._seen.put(f"task:{row[0]}", row[-1])

    async def save_run(
        self, session: Session, tasks: Iterable[TaskRun], *, queued: Collection[str] = ()
    ) -> None:
        tasks = list(tasks)
        row = _session_row(session)
        rows = [_task_row(t) for t in tasks]
        columns = [list(c) for c in zip(*rows, strict=True)] if rows else [[], [], [], []]
        entries = [(t.task_id, t.priority, ready_time(t)) for t in tasks if t.task_id in queued]
        queue = [list(c) for c in zip(*entries, strict=True)] if entries else [[], [], []]
        async with self._conn() as conn:
            await conn.execute(_PUT_RUN, *row, *columns, *queue, CHANNEL, self._token)
        self._seen.put(f"session:{session.session_id}", row[-1])
        for task_row in rows:
            self._seen.put(f"task:{task_row[0]}", task_row[-1])

    async def get_task(self, task_id: str) -> TaskRun | None:
        async with self._conn() as conn:
            doc = await conn.fetchval(_READ_TASK, task_id)
        self._seen.put(f"task:{task_id}", doc)
        return _load(TaskRun, doc) if doc is not None else None

    async def session_tasks(self, session_id: str) -> list[TaskRun]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT doc FROM opscore_tasks WHERE session_id = $1 ORDER BY seq", session_id
            )
        return [_load(TaskRun, r[0]) for r in rows]

    async def session_with_tasks(self, session_id: str) -> tuple[Session | None, list[TaskRun]]:
        async with self._conn() as conn:
            rows = await conn.fetch(_SESSION_WITH_TASKS, session_id)
        session: Session | None = None
        tasks = []
        for kind, doc, _seq in rows:  # the session's row first, then its tasks in order
            if kind == "s":
                self._seen.put(f"session:{session_id}", doc)
                session = _load(Session, doc)
            else:
                task = _load(TaskRun, doc)
                self._seen.put(f"task:{task.task_id}", doc)
                tasks.append(task)
        return session, tasks

    async def _update_task(
        self,
        task_id: str,
        changes: dict[str, Any],
        *,
        expect: Collection[str] | None = None,
        attempt: int | None = None,
        enqueue_at: datetime | None = None,
    ) -> TaskRun | None:
        def decide(doc: str | None) -> tuple[Write, TaskRun | None]:
            if doc is None:
                return None, None
            task = _load(TaskRun, doc)
            if not task_change_applies(task, expect, attempt):
                return None, None
            task = task.model_copy(update=changes)
            raw = PARSED.dump(task)
            if enqueue_at is not None:
                args = (task_id, task.status.value, raw, task.priority, enqueue_at)
                return (_SET_AND_QUEUE_TASK, (*args, CHANNEL, self._token), raw), task
            return (_SET_TASK, (task_id, task.status.value, raw), raw), task

        return await self._cas(f"task:{task_id}", _READ_TASK, task_id, decide)

    async def inflight_tasks(self, due_by: datetime | None = None) -> list[TaskRun]:
        async with self._conn() as conn:
            if due_by is None:
                rows = await conn.fetch(
                    "SELECT doc FROM opscore_tasks WHERE status = ANY($1::text[])", _INFLIGHT
                )
            else:  # sweep_at: computed by PostgreSQL on every write (migration 5)
                rows = await conn.fetch(
                    "SELECT doc FROM opscore_tasks WHERE sweep_at <= $1", due_by
                )
        return [_load(TaskRun, r[0]) for r in rows]

    async def prune_finished(
        self, *, finished_before: datetime | None, keep: int, batch: int = 500
    ) -> int:
        """Batched deletes: at most ``batch`` sessions, with their tasks and dead letters, in
        one short transaction (the retention sweep calls again while a batch comes back full),
        so retention never holds locks over a large part of the table."""
        async with self._tx() as conn:
            ids = [
                r[0]
                for r in await conn.fetch(
                    """SELECT session_id FROM opscore_sessions
                       WHERE status = ANY($1::text[]) AND (
                         seq <= (SELECT seq FROM opscore_sessions
                                 WHERE status = ANY($1::text[])
                                 ORDER BY seq DESC OFFSET $2 LIMIT 1)
                         OR finished_at < $3)
                       ORDER BY seq LIMIT $4 FOR UPDATE SKIP LOCKED""",
                    _FINISHED,
                    keep,
                    finished_before,
                    batch,
                )
            ]
            if ids:
                await conn.execute(
                    "DELETE FROM opscore_dead_letters WHERE session_id = ANY($1::text[])", ids
                )
                await conn.execute(
                    "DELETE FROM opscore_tasks WHERE session_id = ANY($1::text[])", ids
                )
                await conn.execute(
                    "DELETE FROM opscore_sessions WHERE session_id = ANY($1::text[])", ids
                )
        self._seen.forget(*(f"session:{i}" for i in ids))
        return len(ids)
