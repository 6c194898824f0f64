"""The SQLite file's schema and its migrations, which upgrade a file of any earlier release in
place when the store opens (``meta.schema_version``).

Every b-tree a write touches costs a page in the WAL at its commit, and a page there is two
``pwrite`` calls (the frame's header and the page): 250-270 write calls and 550 kB per
three-step workflow under ``bench.stores``, the largest share of the system calls SQLite adds
to ``memory://``. So an index exists only where a query needs it, and covers only the rows
that query reads (schema 4, below).
"""

from __future__ import annotations

import sqlite3

from ...errors import StorageError
from ...models import TaskRun
from ...models.sweep_due import sweep_due
from ..parsed import PARSED

SCHEMA_VERSION = 5
# runs waiting for their workflow's limit (schema 5): written into the SQL as text, so that
# the partial index over exactly these rows (sessions_queued) is one the planner can use
QUEUED_SQL = "status = 'queued'"
# what inflight_tasks returns; written into the SQL as text (not bound), so that the partial
# index over exactly these rows (tasks_in_flight) is one the planner can use for it
IN_FLIGHT = ("dispatched", "running", "waiting")
IN_FLIGHT_SQL = "status IN ({})".format(", ".join(f"'{s}'" for s in IN_FLIGHT))
# indexes of the first schema that schema 4 dropped (_fewer_pages_per_write)
DROPPED_INDEXES = ("queue_ready", "tasks_status")

# The first schema (as its release created it), less what later migrations dropped; a file of
# any version then runs the migrations it has not had.
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS agents (
    agent_id TEXT PRIMARY KEY, state TEXT, last_seen REAL NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS state_history (
    id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, doc TEXT NOT NULL);
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
CREATE TABLE IF NOT EXISTS queue (
    task_id TEXT PRIMARY KEY, priority INTEGER NOT NULL, ready_at REAL NOT NULL,
    seq INTEGER NOT NULL, lease_until REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS dead_letters (
    task_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, session_id TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS idempotency_created ON idempotency (created);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS held_reports (
  agent_id TEXT PRIMARY KEY, received_at REAL NOT NULL, timestamp REAL NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS held_reports_age ON held_reports (received_at);
CREATE TABLE IF NOT EXISTS documents (
  kind TEXT NOT NULL, id TEXT NOT NULL, doc TEXT NOT NULL, due_at REAL, PRIMARY KEY (kind, id));
CREATE INDEX IF NOT EXISTS documents_due ON documents (kind, due_at) WHERE due_at IS NOT NULL;
"""


def sweep_at(task: TaskRun) -> float | None:
    """The task's ``sweep_at`` column: when a sweep may next act on it (``sweep_due``)."""
    due = sweep_due(task)
    return None if due is None else due.timestamp()


def migrate(db: sqlite3.Connection, path: object) -> None:
    """Bring the file's schema to ``SCHEMA_VERSION``, inside the caller's transaction (all of
    it or none); a file written by a newer release is refused."""
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} has schema {version}, newer than this Ops-Core ({SCHEMA_VERSION})"
        )
    if version < 2:
        # 'due': 1 once the entry's ready-at has passed (set when queued already due, or by
        # the claim that finds it due), so a claim walks the due entries in order (queue_due)
        # and finds the newly due through queue_waiting: each in proportion to what it takes,
        # whatever waits behind or ahead of it
        db.execute("ALTER TABLE queue ADD COLUMN due INTEGER NOT NULL DEFAULT 0")
        db.execute("CREATE INDEX queue_due ON queue (due, priority DESC, seq)")
        db.execute("CREATE INDEX queue_waiting ON queue (due, ready_at)")
    if version < 3:
        # 'sweep_at': when a sweep may next act on the task in flight (NULL: none will), so a
        # round of sweeps reads what is due, not every task in flight
        db.execute("ALTER TABLE tasks ADD COLUMN sweep_at REAL")
        db.execute("CREATE INDEX tasks_sweep_at ON tasks (sweep_at) WHERE sweep_at IS NOT NULL")
        rows = db.execute(f"SELECT doc FROM tasks WHERE {IN_FLIGHT_SQL}").fetchall()
        for (doc,) in rows:
            task = PARSED.load(TaskRun, doc)
            db.execute(
                "UPDATE tasks SET sweep_at = ? WHERE task_id = ?", (sweep_at(task), task.task_id)
            )
    if version < 4:
        _fewer_pages_per_write(db)
    if version < 5:
        _runs_by_what_reads_them(db)
    # at every start: an older release, refusing this file as newer, has already run its
    # schema script, which creates these again (IF NOT EXISTS)
    for dropped in DROPPED_INDEXES:
        db.execute(f"DROP INDEX IF EXISTS {dropped}")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _fewer_pages_per_write(db: sqlite3.Connection) -> None:
    """Schema 4: fewer b-trees on the hot path. A three-step workflow run alone wrote 116-122
    pages to the WAL, now 96-102; under load 264-274 write calls per workflow, now 215-217
    (``bench/README.md``).

    - ``queue_ready`` (ready_at) goes: ``queue_waiting`` (due, ready_at) answers the same
      questions (the earliest entry, due or not), and every entry queued and acknowledged
      wrote a page of it.
    - ``tasks_status`` (every task by status) becomes ``tasks_in_flight``, over the tasks in
      flight only: the one query that used it reads those (``inflight_tasks``), and every
      move of every task, queued and finished included, wrote a page of it.
    - The queue is keyed by its task alone (``WITHOUT ROWID``): a rowid table kept its rows
      and, apart, the index of their task ids, both written at every entry queued and
      acknowledged.
    - An agent's history loses AUTOINCREMENT, which kept the largest id ever given in
      ``sqlite_sequence``: a page more at every report. Its ids still grow within an agent
      (a new row's id is above every row there), which is all the history's order and trim
      need. (Keyed ``WITHOUT ROWID`` by agent and id, a report wrote more pages, not fewer:
      rows of half a kilobyte inserted mid-tree split pages, where a rowid table appends.)
    """
    db.execute(
        f"CREATE INDEX IF NOT EXISTS tasks_in_flight ON tasks (status) WHERE {IN_FLIGHT_SQL}"
    )
    queue = _table_sql(db, "queue")
    if queue is not None and "WITHOUT ROWID" not in queue.upper():
        db.execute(
            "CREATE TABLE queue_4 (task_id TEXT PRIMARY KEY, priority INTEGER NOT NULL, "
            "ready_at REAL NOT NULL, seq INTEGER NOT NULL, lease_until REAL, "
            "due INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
        )
        db.execute(
            "INSERT INTO queue_4 SELECT task_id, priority, ready_at, seq, lease_until, due "
            "FROM queue"
        )
        db.execute("DROP TABLE queue")  # and its indexes
        db.execute("ALTER TABLE queue_4 RENAME TO queue")
        db.execute("CREATE INDEX queue_due ON queue (due, priority DESC, seq)")
        db.execute("CREATE INDEX queue_waiting ON queue (due, ready_at)")
    history = _table_sql(db, "state_history")
    if history is not None and "AUTOINCREMENT" in history.upper():
        db.execute(
            "CREATE TABLE state_history_4 ("
            "id INTEGER PRIMARY KEY, agent_id TEXT NOT NULL, doc TEXT NOT NULL)"
        )
        db.execute("INSERT INTO state_history_4 SELECT id, agent_id, doc FROM state_history")
        db.execute("DROP TABLE state_history")  # its index, and its row in sqlite_sequence
        db.execute("ALTER TABLE state_history_4 RENAME TO state_history")
        db.execute("CREATE INDEX state_history_agent ON state_history (agent_id, id)")


def _runs_by_what_reads_them(db: sqlite3.Connection) -> None:
    """Schema 5: what reads runs by workflow or by age finds them without parsing each one.

    - ``sessions_queued``: the oldest queued run of a workflow (admissions, at each run's
      end) in one index step. Only queued runs are in it, so a run that starts running
      writes no page of it.
    - ``sessions.finished_at`` (Unix seconds, NULL while running): a retention sweep by age
      parsed every finished run's JSON (``json_extract``), 14 of its 21 ms over 10,000 runs,
      inside its write transaction. Not indexed: the sweep reads the finished runs anyway
      (by count), and an index would be a page more at every run's end.
    """
    db.execute(
        f"CREATE INDEX IF NOT EXISTS sessions_queued ON sessions (workflow_id, seq) "
        f"WHERE {QUEUED_SQL}"
    )
    columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
    if "finished_at" not in columns:
        db.execute("ALTER TABLE sessions ADD COLUMN finished_at REAL")
        db.execute(
            "UPDATE sessions SET finished_at = "
            "(julianday(json_extract(doc, '$.finished_at')) - 2440587.5) * 86400.0 "
            "WHERE json_extract(doc, '$.finished_at') IS NOT NULL"
        )


def _table_sql(db: sqlite3.Connection, table: str) -> str | None:
    """The statement that created ``table`` (None: no such table)."""
    row = db.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return None if row is None else str(row[0])
