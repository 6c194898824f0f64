"""Versioned schema migrations for the PostgreSQL store, applied in order at start-up.

Missing migrations run together in one transaction (an upgrade lands whole or not at all)
under an advisory lock, so replicas that
start together do not race: the first applies what is missing, the others then find nothing
to do. ``opscore_schema`` records which versions were applied and when. A database newer than
this Ops-Core (a version it does not know) is refused rather than used half-understood.

Add a migration by appending to ``MIGRATIONS``; never edit one that has shipped.
"""

from __future__ import annotations

from typing import Any

from .functions import install_functions

# (version, what it does, SQL)
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "the first schema: agents, history, templates, sessions, tasks, queue, dead letters",
        """
CREATE TABLE opscore_agents (
    agent_id text PRIMARY KEY, state text, last_seen timestamptz NOT NULL, doc text NOT NULL);
CREATE TABLE opscore_state_history (
    id bigserial PRIMARY KEY, agent_id text NOT NULL, doc text NOT NULL);
CREATE INDEX opscore_state_history_agent ON opscore_state_history (agent_id, id);
CREATE TABLE opscore_workflows (
    id text NOT NULL, version text NOT NULL, seq bigserial, doc text NOT NULL,
    PRIMARY KEY (id, version));
CREATE TABLE opscore_sessions (
    session_id text PRIMARY KEY, seq bigserial, status text NOT NULL,
    workflow_id text, agent_id text, doc text NOT NULL);
CREATE INDEX opscore_sessions_seq ON opscore_sessions (seq);
CREATE INDEX opscore_sessions_status ON opscore_sessions (status, seq);
CREATE TABLE opscore_tasks (
    task_id text PRIMARY KEY, session_id text NOT NULL, seq bigserial,
    status text NOT NULL, doc text NOT NULL);
CREATE INDEX opscore_tasks_session ON opscore_tasks (session_id, seq);
CREATE INDEX opscore_tasks_status ON opscore_tasks (status);
CREATE SEQUENCE opscore_queue_seq;
CREATE TABLE opscore_queue (
    task_id text PRIMARY KEY, priority integer NOT NULL, ready_at timestamptz NOT NULL,
    seq bigint NOT NULL, lease_until timestamptz);
CREATE INDEX opscore_queue_order ON opscore_queue (priority DESC, seq);
CREATE TABLE opscore_dead_letters (
    task_id text PRIMARY KEY, seq bigserial, doc text NOT NULL);
CREATE TABLE opscore_idempotency (
    key text PRIMARY KEY, session_id text NOT NULL, created timestamptz NOT NULL);
CREATE INDEX opscore_idempotency_created ON opscore_idempotency (created);
CREATE TABLE opscore_held_reports (
    agent_id text PRIMARY KEY, received_at timestamptz NOT NULL, reported_at timestamptz NOT NULL,
    doc text NOT NULL);
CREATE INDEX opscore_held_reports_age ON opscore_held_reports (received_at);
""",
    ),
    (
        2,
        "retention by column: sessions.finished_at and dead_letters.session_id, backfilled",
        """
ALTER TABLE opscore_sessions ADD COLUMN finished_at timestamptz;
UPDATE opscore_sessions SET finished_at = (doc::jsonb ->> 'finished_at')::timestamptz
    WHERE doc::jsonb ->> 'finished_at' IS NOT NULL;
CREATE INDEX opscore_sessions_finished ON opscore_sessions (finished_at)
    WHERE finished_at IS NOT NULL;
ALTER TABLE opscore_dead_letters ADD COLUMN session_id text;
UPDATE opscore_dead_letters SET session_id = doc::jsonb ->> 'session_id';
CREATE INDEX opscore_dead_letters_session ON opscore_dead_letters (session_id);
CREATE INDEX opscore_dead_letters_seq ON opscore_dead_letters (seq);
""",
    ),
    (
        3,
        "the channel replicas share log records, spans and liveness through",
        """
CREATE TABLE opscore_telemetry (
    id bigserial PRIMARY KEY, origin text NOT NULL, kind text NOT NULL, data text NOT NULL);
""",
    ),
    (
        4,
        "documents: event subscriptions, their deliveries, schedules",
        """
CREATE TABLE opscore_documents (
    kind text NOT NULL, id text COLLATE "C" NOT NULL, doc text NOT NULL, due_at timestamptz,
    PRIMARY KEY (kind, id));
CREATE INDEX opscore_documents_due ON opscore_documents (kind, due_at) WHERE due_at IS NOT NULL;
""",
    ),
    (
        5,
        "tasks.sweep_at: when a sweep may next act on a task in flight, computed from its row",
        # models/sweep_due.py's rule, in SQL: the column is computed by PostgreSQL from the
        # row on every write (and for the rows already there as it is added), so no statement
        # that writes a task has to carry it. Declared IMMUTABLE: the timestamps it casts all
        # carry their offset, so the answer depends on the row alone.
        """
CREATE FUNCTION opscore_sweep_at(status text, doc text) RETURNS timestamptz
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    d jsonb;
    due timestamptz;
BEGIN
    IF status NOT IN ('dispatched', 'running', 'waiting') THEN
        RETURN NULL;
    END IF;
    d := doc::jsonb;
    due := (d ->> 'deadline')::timestamptz;
    IF status <> 'waiting' THEN
        IF (d ->> 'pull')::boolean THEN
            due := least(due, (d ->> 'lease_until')::timestamptz);
        END IF;
        IF jsonb_typeof(d -> 'a2a') = 'object' THEN
            due := least(due, coalesce((d -> 'a2a' ->> 'next_check_at')::timestamptz,
                                       (d -> 'a2a' ->> 'checked_at')::timestamptz,
                                       'epoch'::timestamptz));
        END IF;
    END IF;
    RETURN due;
END $$;
ALTER TABLE opscore_tasks ADD COLUMN sweep_at timestamptz
    GENERATED ALWAYS AS (opscore_sweep_at(status, doc)) STORED;
CREATE INDEX opscore_tasks_sweep_at ON opscore_tasks (sweep_at) WHERE sweep_at IS NOT NULL;
""",
    ),
    (
        6,
        "telemetry batches compressed with lz4 where the server has it",
        # A row of the telemetry channel holds a replica's whole batch (telemetry.py), tens
        # of kilobytes, which PostgreSQL compresses as it stores it: pglz took 570-600 us of
        # the server's time per 100 kB row, lz4 200-230 (one connection inserting in a
        # loop). A server built without lz4 (or older than PostgreSQL 14) keeps pglz.
        """
DO $$
BEGIN
    EXECUTE 'ALTER TABLE opscore_telemetry ALTER COLUMN data SET COMPRESSION lz4';
EXCEPTION WHEN OTHERS THEN
    NULL;
END $$;
""",
    ),
    (
        7,
        "queued runs indexed by workflow: the run a limit admits next, in one index step",
        # Only queued runs are in it (a run that starts running is no page of it), and the
        # query names the status as text (runs.py), so its generic plan can use it.
        """
CREATE INDEX opscore_sessions_queued ON opscore_sessions (workflow_id, seq)
    WHERE status = 'queued';
""",
    ),
    (
        8,
        "runs indexed by workflow: a workflow's runs listed and counted from the index",
        # GET /sessions?workflowId=... (the console's runs of a workflow) counted its matches
        # over every run kept, through the whole table: an entry per version of a run's row
        # costs less than a scan of every run at every such list.
        """
CREATE INDEX opscore_sessions_workflow ON opscore_sessions (workflow_id, seq);
""",
    ),
]
LATEST = MIGRATIONS[-1][0]
_LOCK = 0x0B5C0BE  # the advisory lock every replica takes while migrating


class SchemaTooNewError(Exception):
    """The database was migrated by a newer Ops-Core."""


async def migrate(conn: Any, *, target: int = LATEST) -> list[int]:
    """Apply the migrations this database lacks, up to ``target``, and put this Ops-Core's
    functions in place (``functions.py``); returns the migrations applied."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS opscore_schema (version integer PRIMARY KEY, "
            "description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        current = await conn.fetchval("SELECT coalesce(max(version), 0) FROM opscore_schema")
        if current > LATEST:
            raise SchemaTooNewError(
                f"the database has schema version {current}, newer than this Ops-Core's "
                f"({LATEST}): upgrade Ops-Core, or point it at another database"
            )
        for version, description, sql in MIGRATIONS:
            if current < version <= target:
                await conn.execute(sql)
                await conn.execute(
                    "INSERT INTO opscore_schema (version, description) VALUES ($1, $2)",
                    version,
                    description,
                )
                applied.append(version)
        await install_functions(conn)
    return applied
