"""What only the SQLite store does. Point calls run on the event loop, on a connection that
never waits; whatever may wait (scans, checkpoints, a point call that found the file locked)
runs on the store's own thread, where calls that queue while it is busy share one
transaction, each in a savepoint of its own (group commit)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from datetime import timedelta

import pytest

from opscore.errors import StorageError
from opscore.models import SessionStatus, TaskStatus, utcnow
from opscore.storage import storage_from_url
from opscore.storage.sqlite import base as sqlite_base
from opscore.storage.sqlite import schema
from opscore.storage.sqlite.worker import GroupCommitThread

from .test_storage_contract import agent, record, session, task


@pytest.fixture
def db(tmp_path):
    conn = sqlite3.connect(tmp_path / "g.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    yield conn, statements
    conn.close()


async def test_queued_calls_share_a_transaction_and_a_failure_undoes_only_its_own(db) -> None:
    conn, statements = db
    worker = GroupCommitThread(lambda: conn)
    started = threading.Event()
    release = threading.Event()

    def hold() -> None:  # keeps the thread busy while the others queue
        started.set()
        release.wait(10)

    def insert(key: str, fail: bool = False):
        def run() -> str:
            conn.execute("INSERT INTO t VALUES (?)", (key,))
            if fail:
                raise ValueError(f"{key} refused after writing")
            return key

        return run

    try:
        holding = asyncio.ensure_future(worker.call(hold))
        await asyncio.to_thread(started.wait, 10)
        calls = [
            asyncio.ensure_future(worker.call(insert("a"))),
            asyncio.ensure_future(worker.call(insert("b", fail=True))),
            asyncio.ensure_future(worker.call(insert("c"))),
        ]
        await asyncio.sleep(0.05)  # all three are queued behind hold()
        statements.clear()
        release.set()
        await holding
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        release.set()
        worker.stop()

    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError)
    rows = {r[0] for r in conn.execute("SELECT k FROM t")}
    assert rows == {"a", "c"}  # b's insert went with its savepoint; a's and c's stayed
    # hold() had its own transaction; the three queued behind it shared one
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("SAVEPOINT call") == 3


async def test_a_store_that_refuses_writes_fails_the_call_and_recovers(db) -> None:
    conn, _ = db
    worker = GroupCommitThread(lambda: conn)
    conn.execute("PRAGMA query_only = ON")  # nothing can be written, as on a full disk
    try:
        with pytest.raises(StorageError, match="SQLite error"):
            await worker.call(lambda: conn.execute("INSERT INTO t VALUES ('x')"))
        conn.execute("PRAGMA query_only = OFF")  # space is back
        await worker.call(lambda: conn.execute("INSERT INTO t VALUES ('y')"))
        assert await worker.call(lambda: conn.execute("SELECT k FROM t").fetchall()) == [("y",)]
    finally:
        worker.stop()


async def test_a_closed_store_answers_every_queued_call_with_an_error() -> None:
    worker = GroupCommitThread(lambda: None)
    try:
        with pytest.raises(StorageError, match="not open"):
            await worker.call(lambda: 1)
    finally:
        worker.stop()


@pytest.fixture
async def store(tmp_path):
    storage = storage_from_url(f"sqlite:///{tmp_path}/store.db")
    await storage.open()
    yield storage
    await storage.close()


def _statements_by_thread(store) -> list[tuple[str, str]]:
    """(thread name, statement) of every statement on either of the store's connections."""
    seen: list[tuple[str, str]] = []

    def trace(statement: str) -> None:
        seen.append((threading.current_thread().name, statement))

    store._loop_conn.set_trace_callback(trace)
    store._conn.set_trace_callback(trace)
    return seen


async def test_point_calls_run_on_the_event_loop_and_scans_on_the_store_thread(store) -> None:
    seen = _statements_by_thread(store)
    loop_thread = threading.current_thread().name
    await store.create_agent(agent("a1"))
    await store.record_state(record("a1", "idle", 1), history_limit=10)
    assert (await store.get_agent("a1")).state == "idle"
    point = list(seen)
    seen.clear()
    page = await store.list_agents(offset=0, limit=10, state=None, capability=None)
    assert [a.agent_id for a in page.items] == ["a1"]

    assert point and all(thread == loop_thread for thread, _ in point)
    assert "BEGIN IMMEDIATE" in [statement for _, statement in point]
    # the scan ran on the store's thread, in a read transaction that locks out no writer
    assert seen and all(thread == "opscore-sqlite" for thread, _ in seen)
    assert seen[0][1] == "BEGIN"


async def test_a_whole_read_of_a_small_fleet_runs_on_the_event_loop_and_of_a_large_one_on_the_thread(
    store, monkeypatch
) -> None:
    """The dispatcher reads the available agents at each pass with work; a read is whole
    when another connection wrote the file (sqlite/fleet.py). For a few agents the hop to the
    store's thread cost more than the read: a small fleet is read whole on the loop."""
    from opscore.storage.sqlite import agents as sqlite_agents

    monkeypatch.setattr(sqlite_agents, "LOOP_FLEET", 3)
    loop_thread = threading.current_thread().name
    for i in range(3):
        await store.save_agent(agent(f"a{i}", state="idle"))
    seen = _statements_by_thread(store)
    other = sqlite3.connect(store.path, isolation_level=None)  # another process on the file

    async def whole_read_on(*, after_another_writes: bool = True) -> set[str]:
        if after_another_writes:
            other.execute("UPDATE agents SET last_seen = last_seen + 1 WHERE agent_id = 'a0'")
        seen.clear()
        await store.available_agents({"idle"})
        return {
            thread for thread, statement in seen if statement.startswith("SELECT agent_id, doc")
        }

    try:
        # the first read: the fleet's size unknown
        assert await whole_read_on(after_another_writes=False) == {"opscore-sqlite"}
        assert await whole_read_on() == {loop_thread}
        assert len(await store.available_agents({"idle"})) == 3
        await store.save_agent(agent("a3", state="idle"))
        assert await whole_read_on() == {loop_thread}  # grown past the bound since the last read
        assert await whole_read_on() == {"opscore-sqlite"}
        await store.delete_agent("a3")
        assert await whole_read_on() == {
            "opscore-sqlite"
        }  # 3 found: small again from the next read
        assert await whole_read_on() == {loop_thread}
        assert await whole_read_on(after_another_writes=False) == set()  # no one else wrote
    finally:
        other.close()


async def test_a_point_write_on_a_locked_file_waits_on_the_store_thread_and_lands_once(
    store,
) -> None:
    await store.create_agent(agent("a1"))
    seen = _statements_by_thread(store)
    holder = sqlite3.connect(store.path, isolation_level=None, timeout=1)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process is writing
        write = asyncio.ensure_future(
            store.record_state(record("a1", "active", 1), history_limit=10)
        )
        await asyncio.sleep(0.2)
        assert not write.done()  # it waits for the lock, on the store's thread
        # reads do not wait for a writer in WAL mode: they still answer on the loop
        assert (await store.get_agent("a1")).state != "active"
        holder.execute("COMMIT")
        written, duplicate = await asyncio.wait_for(write, 15)
    finally:
        holder.close()

    assert written.state == "active" and not duplicate
    history = await store.state_history("a1", offset=0, limit=10)
    assert [r.state for r in history.items] == ["active"]  # the retry did not write it twice
    on_thread = [statement for thread, statement in seen if thread == "opscore-sqlite"]
    assert any(statement.startswith("INSERT INTO state_history") for statement in on_thread)


async def test_writes_on_the_loop_leave_checkpoints_to_the_store_thread(
    tmp_path, monkeypatch
) -> None:
    capabilities = [f"c{j}" * 20 for j in range(5)]

    async def wal_bytes_after_writes(name: str) -> int:
        storage = storage_from_url(f"sqlite:///{tmp_path}/{name}.db")
        await storage.open()
        try:
            seen = _statements_by_thread(storage)
            for i in range(600):
                await storage.save_agent(agent(f"a{i % 20}", capabilities=capabilities))
                if i % 50 == 49:
                    await storage.ping()  # queued behind a checkpoint due: it is done
            checkpoints = [(t, s) for t, s in seen if "wal_checkpoint" in s]
            assert all(thread == "opscore-sqlite" for thread, _ in checkpoints)
            assert len(checkpoints) == (12 if sqlite_base.CHECKPOINT_EVERY == 50 else 0)
            return (tmp_path / f"{name}.db-wal").stat().st_size
        finally:
            await storage.close()

    monkeypatch.setattr(sqlite_base, "CHECKPOINT_EVERY", 10**9)
    unchecked = await wal_bytes_after_writes("never")  # the loop itself never checkpoints
    monkeypatch.setattr(sqlite_base, "CHECKPOINT_EVERY", 50)
    checked = await wal_bytes_after_writes("every50")
    assert unchecked > 1_000_000
    assert checked < unchecked / 4


async def test_a_changed_record_is_written_in_place(store) -> None:
    """Not INSERT OR REPLACE, which deletes the row and inserts it anew: every index entry
    rewritten and the pages around it rebalanced, three times the WAL pages per task move."""
    await store.create_agent(agent("a1"))
    await store.save_session(session("s1"))
    await store.save_tasks([task("t1"), task("t2")])

    def rowids() -> list[int]:
        return [
            store._loop_conn.execute(sql).fetchone()[0]
            for sql in (
                "SELECT rowid FROM agents WHERE agent_id = 'a1'",
                "SELECT rowid FROM sessions WHERE session_id = 's1'",
                "SELECT rowid FROM tasks WHERE task_id = 't1'",
            )
        ]

    before = rowids()
    await store.record_state(record("a1", "active", 1), history_limit=10)
    await store.save_session(session("s1", status=SessionStatus.RUNNING))
    moved = await store.update_task("t1", {"status": TaskStatus.QUEUED}, expect=["pending"])
    assert moved is not None and moved.status == TaskStatus.QUEUED
    assert rowids() == before
    assert (await store.get_session("s1")).status == SessionStatus.RUNNING
    assert [t.task_id for t in await store.session_tasks("s1")] == ["t1", "t2"]


async def test_a_claim_costs_the_same_whatever_waits_in_the_queue(store) -> None:
    """A claim walks the due entries in order and finds the newly due by their ready-at: a
    backlog of due entries behind it, or of delayed ones ahead of it (a lower sequence),
    costs it nothing. Counted in SQLite's own steps (a progress handler), not in time."""
    now = utcnow()

    async def claim_steps() -> int:
        steps = [0]

        def step() -> int:
            steps[0] += 1
            return 0

        store._loop_conn.set_progress_handler(step, 100)
        try:
            taken = await store.dequeue_ready(now, 1)
        finally:
            store._loop_conn.set_progress_handler(None, 100)
        await store.requeue(taken)
        return steps[0]

    async def queue(prefix: str, count: int, ready_in: float) -> None:
        for i in range(count):
            await store.enqueue(
                f"{prefix}-{i}", priority=0, ready_at=now + timedelta(seconds=ready_in)
            )

    await queue("small", 10, 0)
    small = await claim_steps()
    await queue("delayed", 5_000, 60)  # ahead of what follows in order, not yet due
    await queue("due", 5_000, 0)
    large = await claim_steps()
    assert large <= small + 2, (small, large)
    later = await store.dequeue_ready(now + timedelta(seconds=61), 3)
    assert [e.task_id for e in later] == ["small-0", "small-1", "small-2"]


async def test_entries_queued_under_the_first_schema_come_out_in_order(tmp_path) -> None:
    """Schema 2 marks due entries ('due'): a file of schema 1 is upgraded in place and its
    entries, due, delayed and leased out, come out as they would have."""
    path = tmp_path / "old.db"
    first = storage_from_url(f"sqlite:///{path}")
    await first.open()
    now = utcnow()
    await first.enqueue("late", priority=5, ready_at=now + timedelta(seconds=30))
    await first.enqueue("low", priority=0, ready_at=now - timedelta(seconds=1))
    await first.enqueue("high", priority=9, ready_at=now - timedelta(seconds=1))
    await first.enqueue("leased", priority=9, ready_at=now - timedelta(seconds=1))
    await first.close()
    back_to_schema(path, 1)  # as an older release wrote it
    conn = sqlite3.connect(path)
    conn.execute(
        "UPDATE queue SET lease_until = ? WHERE task_id = 'leased'", (now.timestamp() + 5,)
    )
    conn.commit()
    conn.close()
    store = storage_from_url(f"sqlite:///{path}")
    await store.open()
    try:
        got = await store.dequeue_ready(now, 10)
        assert [e.task_id for e in got] == ["high", "low"]
        await store.ack(["high", "low"])
        at_31 = await store.dequeue_ready(now + timedelta(seconds=31), 10)
        assert [e.task_id for e in at_31] == ["leased", "late"]  # its lease ran out first
        version = store._loop_conn.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchone()[0]
        assert version == str(schema.SCHEMA_VERSION)
    finally:
        await store.close()


def back_to_schema(path, version: int) -> None:
    """The file as the release of schema ``version`` left it: later migrations undone."""
    conn = sqlite3.connect(path)
    # schema 5's undone: no index of the queued runs by workflow, no column of their ends
    conn.execute("DROP INDEX sessions_queued")
    conn.execute("ALTER TABLE sessions DROP COLUMN finished_at")
    if version >= 4:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        conn.commit()
        conn.close()
        return
    # schema 4's undone: the queue and the history as rowid tables (the history with
    # AUTOINCREMENT), every entry indexed by ready-at and every task by status
    conn.execute("DROP INDEX tasks_in_flight")
    conn.execute("CREATE INDEX tasks_status ON tasks (status)")
    conn.execute(
        "CREATE TABLE queue_3 (task_id TEXT PRIMARY KEY, priority INTEGER NOT NULL, "
        "ready_at REAL NOT NULL, seq INTEGER NOT NULL, lease_until REAL, "
        "due INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute("INSERT INTO queue_3 SELECT * FROM queue")
    conn.execute("DROP TABLE queue")
    conn.execute("ALTER TABLE queue_3 RENAME TO queue")
    conn.execute("CREATE INDEX queue_ready ON queue (ready_at)")
    conn.execute("CREATE INDEX queue_due ON queue (due, priority DESC, seq)")
    conn.execute("CREATE INDEX queue_waiting ON queue (due, ready_at)")
    conn.execute(
        "CREATE TABLE history_3 (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "agent_id TEXT NOT NULL, doc TEXT NOT NULL)"
    )
    conn.execute("INSERT INTO history_3 SELECT id, agent_id, doc FROM state_history")
    conn.execute("DROP TABLE state_history")
    conn.execute("ALTER TABLE history_3 RENAME TO state_history")
    conn.execute("CREATE INDEX state_history_agent ON state_history (agent_id, id)")
    if version < 3:
        conn.execute("DROP INDEX tasks_sweep_at")
        conn.execute("ALTER TABLE tasks DROP COLUMN sweep_at")
    if version < 2:
        conn.execute("DROP INDEX queue_due")
        conn.execute("DROP INDEX queue_waiting")
        conn.execute("ALTER TABLE queue DROP COLUMN due")
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    conn.commit()
    conn.close()


def shape(path) -> dict[str, str]:
    """The file's tables and indexes, by name, with the SQL that made them."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name, coalesce(sql, '') FROM sqlite_master WHERE type IN ('table', 'index')"
        ).fetchall()
    finally:
        conn.close()
    return dict(rows)


async def test_a_file_of_schema_3_is_upgraded_in_place_with_fewer_btrees(tmp_path) -> None:
    """Schema 4 writes fewer b-trees per task (schema.py): a file of schema 3 keeps its
    queue, its histories (in order, trimmed as before) and its tasks in flight, and comes
    out with the queue keyed by task, no index by ready-at, tasks indexed by status only in
    flight, and no AUTOINCREMENT on the history."""
    path = tmp_path / "old.db"
    first = storage_from_url(f"sqlite:///{path}")
    await first.open()
    now = utcnow()
    await first.create_agent(agent("a1"))
    await first.create_agent(agent("a2"))
    for i in range(6):
        await first.record_state(record("a1" if i % 2 else "a2", "idle", i), history_limit=8)
    await first.save_tasks(
        [
            task("run", status=TaskStatus.RUNNING, deadline=now + timedelta(seconds=5)),
            task("waits", status=TaskStatus.WAITING),
            task("done", status=TaskStatus.COMPLETED),
            task("next", status=TaskStatus.QUEUED),
        ]
    )
    await first.enqueue("late", priority=5, ready_at=now + timedelta(seconds=30))
    await first.enqueue("low", priority=0, ready_at=now - timedelta(seconds=2))
    await first.enqueue("high", priority=9, ready_at=now - timedelta(seconds=1))
    await first.close()
    back_to_schema(path, 3)
    old = shape(path)
    assert "AUTOINCREMENT" in old["state_history"] and "queue_ready" in old
    store = storage_from_url(f"sqlite:///{path}")
    await store.open()
    try:
        new = shape(path)
        assert "WITHOUT ROWID" in new["queue"] and "AUTOINCREMENT" not in new["state_history"]
        assert "queue_ready" not in new and "tasks_status" not in new
        assert "'dispatched', 'running', 'waiting'" in new["tasks_in_flight"]
        conn = sqlite3.connect(path)
        try:
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            assert version.fetchone()[0] == str(schema.SCHEMA_VERSION) == "5"
            plan = conn.execute(
                f"EXPLAIN QUERY PLAN SELECT doc FROM tasks WHERE {schema.IN_FLIGHT_SQL}"
            ).fetchall()
            assert "tasks_in_flight" in str(plan)
        finally:
            conn.close()
        assert sorted(t.task_id for t in await store.inflight_tasks()) == ["run", "waits"]
        assert near(await store.oldest_ready_at(now), now - timedelta(seconds=2))
        assert near(await store.next_ready_at(now), now + timedelta(seconds=30))
        assert [e.task_id for e in await store.dequeue_ready(now, 10)] == ["high", "low"]
        # the histories as they were, newest first; new reports go on top and trim as before
        page = await store.state_history("a1", offset=0, limit=10)
        assert [r.timestamp for r in page.items] == [
            record("a1", "idle", i).timestamp for i in (5, 3, 1)
        ]
        for i in range(6, 20):
            await store.record_state(record("a1", "busy", i), history_limit=8)
        page = await store.state_history("a1", offset=0, limit=100)
        seconds = [(r.timestamp - record("a1", "idle", 0).timestamp).seconds for r in page.items]
        assert seconds[:8] == list(range(19, 11, -1)) and len(seconds) <= 10  # 8, a quarter more
        assert (await store.state_history("a2", offset=0, limit=10)).total == 3
    finally:
        await store.close()
    # an older release refuses the file as newer, but its schema script has run by then and
    # made the indexes schema 4 dropped again: the next start drops them
    conn = sqlite3.connect(path)
    conn.execute("CREATE INDEX IF NOT EXISTS queue_ready ON queue (ready_at)")
    conn.execute("CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status)")
    conn.commit()
    conn.close()
    again = storage_from_url(f"sqlite:///{path}")
    await again.open()
    await again.close()
    assert "queue_ready" not in shape(path) and "tasks_status" not in shape(path)


def near(found, expected) -> bool:
    return found is not None and abs(found - expected) < timedelta(milliseconds=5)


async def test_tasks_in_flight_under_schema_2_are_found_by_the_sweeps(tmp_path) -> None:
    """Schema 3 indexes tasks in flight by when a sweep may act on them ('sweep_at'): a file
    of schema 2 gets the column filled for the tasks already in flight, so none is missed."""
    path = tmp_path / "old.db"
    first = storage_from_url(f"sqlite:///{path}")
    await first.open()
    now = utcnow()
    soon, later = now + timedelta(seconds=5), now + timedelta(seconds=50)
    await first.save_tasks(
        [
            task("soon", status=TaskStatus.RUNNING, deadline=soon),
            task("later", status=TaskStatus.DISPATCHED, deadline=later),
            task("waits", status=TaskStatus.WAITING),
            task("done", status=TaskStatus.COMPLETED, deadline=soon),
        ]
    )
    await first.close()
    back_to_schema(path, 2)
    store = storage_from_url(f"sqlite:///{path}")
    await store.open()
    try:
        assert [t.task_id for t in await store.inflight_tasks(due_by=now)] == []
        due = await store.inflight_tasks(due_by=now + timedelta(seconds=6))
        assert [t.task_id for t in due] == ["soon"]
        due = await store.inflight_tasks(due_by=now + timedelta(days=1))
        assert sorted(t.task_id for t in due) == ["later", "soon"]
        assert sorted(t.task_id for t in await store.inflight_tasks()) == ["later", "soon", "waits"]
    finally:
        await store.close()


async def test_a_claim_brings_its_tasks_in_its_own_statement(store) -> None:
    """The dispatcher needs each claimed entry's task: read with the claim (a join), not in
    a transaction of its own per entry."""
    now = utcnow()
    await store.save_tasks([task("t1", status=TaskStatus.QUEUED), task("t2")])
    await store.enqueue("t1", priority=0, ready_at=now)
    await store.enqueue("gone", priority=0, ready_at=now)  # its task was deleted meanwhile
    seen = _statements_by_thread(store)
    entries = await store.dequeue_ready(now, 10)
    assert [(e.task_id, e.read) for e in entries] == [("t1", True), ("gone", True)]
    assert entries[0].task is not None and entries[0].task.status == TaskStatus.QUEUED
    assert entries[1].task is None
    reads = [s for _, s in seen if "tasks" in s]
    assert len(reads) == 1 and "JOIN" in reads[0]


@pytest.mark.parametrize("returning", [True, False])
async def test_a_counter_is_taken_in_one_statement_where_sqlite_has_returning(
    store, monkeypatch, returning: bool
) -> None:
    """Each entry queued takes the queue's counter (its order among equals): one statement
    with RETURNING (SQLite 3.35), the increment and a read before; in order either way."""
    monkeypatch.setattr(sqlite_base, "_RETURNING", returning)
    await store.save_tasks([task(t, status=TaskStatus.QUEUED) for t in ("t1", "t2", "t3")])
    seen = _statements_by_thread(store)
    now = utcnow()
    for task_id in ("t2", "t1", "t3"):
        await store.enqueue(task_id, priority=0, ready_at=now)
    counted = [s for _, s in seen if "counters" in s]
    assert len(counted) == (3 if returning else 6), counted
    assert [e.task_id for e in await store.dequeue_ready(now, 10)] == ["t2", "t1", "t3"]


async def test_a_report_trims_its_agents_history_once_a_quarter_of_the_limit(store) -> None:
    """The trim walks the agent's newest reports in its index: once every quarter of the
    limit, not at every report (history_trims.py)."""
    await store.create_agent(agent("a1"))
    seen = _statements_by_thread(store)
    for i in range(40):
        await store.record_state(record("a1", "idle", i), history_limit=100)
    deletes = [s for _, s in seen if s.startswith("DELETE FROM state_history")]
    assert len(deletes) == 2  # the first report, then the 26th


async def test_a_file_of_schema_4_gets_the_queued_runs_index_and_the_runs_ends(
    tmp_path,
) -> None:
    """Schema 5 indexes the queued runs by workflow (only them): the oldest queued run of a
    workflow, which admissions read at each run's end, is one step of that index. And it
    keeps each run's end in a column, filled in for the runs already there, which retention
    by age reads instead of each run's JSON."""
    path = tmp_path / "old.db"
    first = storage_from_url(f"sqlite:///{path}")
    await first.open()
    for i, workflow_id in enumerate(["other", "w", "other", "w"]):
        await first.save_session(
            session(f"q{i}", workflow_id=workflow_id, status=SessionStatus.QUEUED)
        )
    now = utcnow()
    for name, ago in (("old", 7200), ("recent", 60)):
        ended = now - timedelta(seconds=ago)
        await first.save_session(session(name, status=SessionStatus.COMPLETED, finished_at=ended))
    await first.close()
    back_to_schema(path, 4)
    assert "sessions_queued" not in shape(path) and "finished_at" not in shape(path)["sessions"]
    store = storage_from_url(f"sqlite:///{path}")
    await store.open()
    try:
        assert "status = 'queued'" in shape(path)["sessions_queued"]
        cut = now - timedelta(seconds=3600)
        assert await store.prune_finished(finished_before=cut, keep=100) == 1
        assert await store.get_session("old") is None and await store.get_session("recent")
        ends = store._loop_conn.execute(
            "SELECT session_id, finished_at FROM sessions WHERE finished_at IS NOT NULL"
        ).fetchall()
        assert [(sid, round(end)) for sid, end in ends] == [
            ("recent", round((now - timedelta(seconds=60)).timestamp()))
        ]
        found = await store.oldest_session(status="queued", workflow_id="w")
        assert found is not None and found.session_id == "q1"
        conn = sqlite3.connect(path)
        try:
            plan = conn.execute(
                "EXPLAIN QUERY PLAN SELECT doc FROM sessions "
                f"WHERE {schema.QUEUED_SQL} AND workflow_id = ? ORDER BY seq LIMIT 1",
                ("w",),
            ).fetchall()
            assert "sessions_queued" in str(plan) and "TEMP B-TREE" not in str(plan)
        finally:
            conn.close()
    finally:
        await store.close()
