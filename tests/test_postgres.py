"""What only the PostgreSQL store has: versioned migrations that upgrade a database in place,
and LISTEN/NOTIFY that wakes every replica when work is queued. (Everything else it shares
with the other stores: tests/test_storage_contract.py and the whole-flow tests.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import timedelta

import pytest

from opscore.errors import NoFreeSlotError, StorageError
from opscore.models import DeadLetter, Session, SessionStatus, TaskStatus, utcnow
from opscore.storage.postgres import PostgresStorage
from opscore.storage.postgres.migrations import LATEST, MIGRATIONS, migrate


@pytest.fixture
def pg(postgresql_server):
    postgresql_server.flush()
    return postgresql_server


async def _connect(url: str):
    import asyncpg

    return await asyncpg.connect(url)


async def test_a_database_on_the_first_schema_is_upgraded_in_place_and_keeps_its_data(pg) -> None:
    # Given a database an Ops-Core with only the first schema wrote to
    from .test_storage_contract import task

    soon = utcnow() + timedelta(seconds=5)
    in_flight = [
        task("t-soon", status=TaskStatus.RUNNING, deadline=soon),
        task("t-later", status=TaskStatus.DISPATCHED, deadline=soon + timedelta(hours=1)),
        task("t-waits", status=TaskStatus.WAITING),
    ]
    conn = await _connect(pg.url)
    try:
        assert await migrate(conn, target=1) == [1]
        finished = utcnow() - timedelta(days=3)
        old = Session(
            session_id="s-old",
            workflow_id="wf",
            status=SessionStatus.COMPLETED,
            created_at=finished,
            updated_at=finished,
            finished_at=finished,
        )
        await conn.execute(
            "INSERT INTO opscore_sessions (session_id, status, workflow_id, agent_id, doc) "
            "VALUES ($1, $2, $3, NULL, $4)",
            old.session_id,
            old.status.value,
            old.workflow_id,
            old.model_dump_json(),
        )
        letter = DeadLetter(
            task_id="t-old", session_id="s-old", step_id="a", attempts=3, dead_lettered_at=finished
        )
        await conn.execute(
            "INSERT INTO opscore_dead_letters (task_id, doc) VALUES ($1, $2)",
            letter.task_id,
            letter.model_dump_json(),
        )
        for t in in_flight:
            await conn.execute(
                "INSERT INTO opscore_tasks (task_id, session_id, status, doc) "
                "VALUES ($1, $2, $3, $4)",
                t.task_id,
                t.session_id,
                t.status.value,
                t.model_dump_json(),
            )
    finally:
        await conn.close()

    # When this Ops-Core opens it
    store = PostgresStorage(pg.url)
    await store.open()
    try:
        # Then every later migration was applied, once, and recorded
        versions = pg.sql(
            "SELECT string_agg(version::text, ',' ORDER BY version) FROM opscore_schema"
        )
        assert versions == ",".join(str(v) for v, _, _ in MIGRATIONS)
        # the old rows read as before
        assert (await store.get_session("s-old")).finished_at == finished
        assert (await store.list_dead_letters(offset=0, limit=10)).total == 1
        # and the columns the new schema added were backfilled: retention by age finds the
        # old run and its dead letter
        assert pg.sql("SELECT session_id FROM opscore_dead_letters") == "s-old"
        # and the tasks in flight are found by the sweeps when they are due (sweep_at)
        assert [t.task_id for t in await store.inflight_tasks(due_by=soon)] == ["t-soon"]
        assert len(await store.inflight_tasks()) == 3
        removed = await store.prune_finished(finished_before=utcnow() - timedelta(days=1), keep=100)
        assert removed == 1
        assert await store.get_session("s-old") is None
        assert (await store.list_dead_letters(offset=0, limit=10)).total == 0
    finally:
        await store.close()

    # and opening it again applies nothing
    again = PostgresStorage(pg.url)
    await again.open()
    await again.close()
    assert pg.sql("SELECT count(*) FROM opscore_schema") == str(LATEST)


async def test_functions_are_put_back_at_start_and_left_alone_when_in_place(pg) -> None:
    # Given a database restored from a dump of the tables alone (pg_dump -t 'opscore_*')
    store = PostgresStorage(pg.url)
    await store.open()
    await store.close()
    pg.sql("DROP FUNCTION opscore_agent_and_task")
    # When Ops-Core starts on it, the function is back, and works
    from .test_storage_contract import agent, task

    store = PostgresStorage(pg.url)
    await store.open()
    try:
        await store.save_agent(agent("w"))
        await store.save_tasks([task("t1", status=TaskStatus.QUEUED)])
        start = {"status": TaskStatus.DISPATCHED, "agent_id": "w"}
        assert await store.update_task("t1", start, expect=["queued"], claim_slot_of="w")
    finally:
        await store.close()
    # and a start that finds it in place does not replace it (that would throw away the
    # plans every other replica's connections hold for it)
    version = pg.sql("SELECT xmin FROM pg_proc WHERE proname = 'opscore_agent_and_task'")
    again = PostgresStorage(pg.url)
    await again.open()
    await again.close()
    assert pg.sql("SELECT xmin FROM pg_proc WHERE proname = 'opscore_agent_and_task'") == version


async def test_replicas_starting_together_migrate_once(pg) -> None:
    stores = [PostgresStorage(pg.url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert pg.sql("SELECT count(*) FROM opscore_schema") == str(LATEST)
        await asyncio.gather(*(s.ping() for s in stores))
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_database_from_a_newer_ops_core_is_refused_with_a_clear_message(pg) -> None:
    store = PostgresStorage(pg.url)
    await store.open()
    await store.close()
    pg.sql(f"INSERT INTO opscore_schema (version, description) VALUES ({LATEST + 1}, 'future')")
    with pytest.raises(StorageError, match="newer than this Ops-Core"):
        await PostgresStorage(pg.url).open()


async def test_a_connection_a_driver_error_left_mid_operation_is_closed_not_reused(
    pg, monkeypatch
) -> None:
    # Given a store whose next statement fails as asyncpg fails on a connection left in the
    # middle of an operation (seen while PostgreSQL was SIGKILLed: a 500, then the same
    # error for every caller handed that connection)
    import asyncpg

    store = PostgresStorage(pg.url)
    await store.open()
    try:
        used = []

        async def left_mid_operation(self, *args, **kwargs):
            used.append(self)
            raise asyncpg.InternalClientError(
                "cannot switch to state 11; another operation (2) is in progress"
            )

        with monkeypatch.context() as patched:
            patched.setattr(asyncpg.connection.Connection, "fetchval", left_mid_operation)
            # When a call meets it: the store is unavailable for it (503), not broken (500)
            with pytest.raises(StorageError, match="PostgreSQL unavailable"):
                await store.ping()
        # Then that connection was closed, not given back to the pool, and the next call
        # is answered on a working one
        assert len(used) == 1 and used[0].is_closed()
        await store.ping()
    finally:
        await store.close()


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_queued_work_wakes_every_other_replica_at_once(pg) -> None:
    a, b = PostgresStorage(pg.url), PostgresStorage(pg.url)
    woken = {"a": 0, "b": 0}
    a.set_queue_listener(lambda: woken.__setitem__("a", woken["a"] + 1))
    b.set_queue_listener(lambda: woken.__setitem__("b", woken["b"] + 1))
    await a.open()
    await b.open()
    try:
        # each wakes once when its LISTEN connection is up (work may have been queued before)
        await _until(lambda: woken == {"a": 1, "b": 1})
        await a.enqueue("t1", priority=0, ready_at=utcnow())
        await _until(lambda: woken["b"] == 2)
        assert woken["a"] == 1  # a replica does not wake itself through the database

        # the listener comes back with the server, and wakes its replica when it does
        pg.kill()
        pg.resume()
        await _until(lambda: woken["b"] >= 3, timeout=30)
        settled = woken["b"]
        await _answering(a)
        await a.enqueue("t2", priority=0, ready_at=utcnow())
        await _until(lambda: woken["b"] > settled, timeout=10)
    finally:
        await a.close()
        await b.close()


async def _answering(store: PostgresStorage, timeout: float = 30.0) -> None:
    """Wait until the store answers again after a restart (its pool reconnects lazily)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            await store.ping()
            return
        except StorageError:
            assert asyncio.get_running_loop().time() < deadline, "store did not come back"
            await asyncio.sleep(0.1)


async def test_changes_of_one_row_from_one_process_wait_for_each_other(pg, monkeypatch) -> None:
    """An agent's 202 and its ``active`` report come together: the report's statement is
    decided on what the 202's wrote, not refused by the rows and sent again (two statements,
    not three), as on Redis (test_storage_contract)."""
    from .test_storage_contract import MoveOnReport, agent, record, task

    store = PostgresStorage(pg.url)
    await store.open()
    try:
        await store.save_agent(agent("a1", active_tasks=["t1"]))
        await store.save_tasks(
            [task("t1", status=TaskStatus.DISPATCHED, agent_id="a1", awaiting_answer=True)]
        )
        # this process's sight of both rows, on two pooled connections, as under load
        await asyncio.gather(store.get_agent("a1"), store.get_task("t1"))
        sent = _count_statements(store, monkeypatch)
        answered, started = await asyncio.gather(
            store.update_task("t1", {"awaiting_answer": False}),
            store.record_report(
                record("a1", "active", 1),  # names no task: the agent's only one
                history_limit=5,
                plan=MoveOnReport(TaskStatus.RUNNING, ["dispatched"]),
            ),
        )
        assert answered is not None and started.task is not None
        assert len(sent) == 2, sent
        found = await store.get_task("t1")
        assert found.status == TaskStatus.RUNNING and not found.awaiting_answer
    finally:
        await store.close()


async def test_a_completion_and_the_next_step_it_queues_are_one_statement(pg, monkeypatch) -> None:
    """An answer's completion (update_task_and_next) and the run's next step it queues: one
    statement, then the agent's slot, as update_task frees it (two, where the completion, the
    run read back and the step queued were four)."""
    from opscore.storage.report_and_task import TaskUpdate

    from .test_storage_contract import running_then_next, then_queue_t2

    store = PostgresStorage(pg.url)
    await store.open()
    try:
        await running_then_next(store)
        sent = _count_statements(store, monkeypatch)
        completion = {"status": TaskStatus.COMPLETED}
        update = TaskUpdate(
            completion, expect=["running"], release_slot_of="a1", then=then_queue_t2()
        )
        done, queued, _ = await store.update_task_and_next("t1", update)
        assert done is not None and queued is not None
        assert len(sent) == 2, sent
        assert "next_moved" in sent[0]
        assert (await store.get_agent("a1")).active_tasks == []
        assert [e.task_id for e in await store.dequeue_ready(utcnow(), 10)] == ["t2"]
    finally:
        await store.close()


async def test_a_report_on_a_sight_another_replica_made_stale_reads_its_rows_at_once(
    pg, monkeypatch
) -> None:
    """Replica B saw agent a1 idle, and never saw its run; replica A started the run and
    handed t1 to a1. a1's ``idle`` report with t1's result reaches B: B reads the agent's
    row, t1's and the step t1's completion queues in one statement, then writes all three
    in one. Read one by one, that was three statements, and the step was left out of the
    write (the run was then read back and the step queued: two more)."""
    from .test_storage_contract import MoveOnReport, agent, record, task, then_queue_t2

    a, b = PostgresStorage(pg.url), PostgresStorage(pg.url)
    await a.open()
    await b.open()
    try:
        await b.save_agent(agent("a1"))
        await a.save_tasks(
            [
                task("t1", status=TaskStatus.QUEUED),
                task("t2", status=TaskStatus.PENDING, depends_on=["t1"]),
            ]
        )
        start = {"status": TaskStatus.DISPATCHED, "agent_id": "a1"}
        assert await a.update_task("t1", start, expect=["queued"], claim_slot_of="a1")
        sent = _count_statements(b, monkeypatch)
        plan = MoveOnReport(
            TaskStatus.COMPLETED, ["dispatched"], release=True, then=then_queue_t2()
        )
        written = await b.record_report(
            record("a1", "idle", 1, opscore_task_id="t1"), history_limit=5, plan=plan
        )
        assert written.task is not None and written.task.status == TaskStatus.COMPLETED
        assert written.queued is not None and written.queued.task_id == "t2"
        assert len(sent) == 2, sent
        assert (await a.get_agent("a1")).active_tasks == []
        assert (await a.get_task("t2")).status == TaskStatus.QUEUED
        assert [e.task_id for e in await a.dequeue_ready(utcnow(), 10)] == ["t2"]
    finally:
        await a.close()
        await b.close()


async def test_a_claim_brings_the_row_its_task_s_completion_may_write_along(
    pg, monkeypatch
) -> None:
    """Replica A started a run (t1 -> t2); replica B claims and hands over its tasks with
    other replicas up (``follows``), and the agent reports to B. Each claimed task comes with
    the row its completion may write along (TaskRun.nextStep: the next step's; endsRun: the
    run's session), so the report is one statement on B, not a read of that row first and
    then the write."""
    from opscore.models import SessionStatus

    from .test_storage_contract import agent, carried_run, record

    a, b = PostgresStorage(pg.url), PostgresStorage(pg.url)
    await a.open()
    await b.open()
    try:
        await b.save_agent(agent("a1"))
        start = {"status": TaskStatus.DISPATCHED, "agent_id": "a1"}
        for i, (task_id, plan) in enumerate(await carried_run(a)):
            (claimed,) = await b.dequeue_ready(utcnow(), 10, follows=True)
            assert claimed.task_id == task_id
            assert await b.update_task(task_id, start, expect=["queued"], claim_slot_of="a1")
            sent = _count_statements(b, monkeypatch)
            report = record("a1", "idle", i + 1, opscore_task_id=task_id)
            written = await b.record_report(report, history_limit=5, plan=plan)
            assert written.task is not None and written.task.status == TaskStatus.COMPLETED
            assert len(sent) == 1, sent
            monkeypatch.undo()
        assert written.ended is not None  # the last report completed the run with it
        assert (await a.get_session("s1")).status == SessionStatus.COMPLETED
        assert (await a.get_task("t2")).status == TaskStatus.COMPLETED
    finally:
        await a.close()
        await b.close()


def _count_statements(store: PostgresStorage, monkeypatch) -> list[str]:
    """The statements ``store`` sends from now on, as they are sent."""
    sent: list[str] = []
    pooled = store._conn

    @contextlib.asynccontextmanager
    async def counting():
        async with pooled() as conn:
            yield _Counted(conn, sent)

    monkeypatch.setattr(store, "_conn", counting)
    return sent


class _Counted:
    """A pooled connection that notes each statement sent on it (and, given a list, each
    answer it got)."""

    def __init__(self, conn, sent: list[str], answers: list | None = None) -> None:
        self._conn, self._sent, self._answers = conn, sent, answers

    def __getattr__(self, name: str):
        attr = getattr(self._conn, name)
        if name not in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
            return attr

        async def counted(query: str, *args, **kwargs):
            self._sent.append(query)
            answer = await attr(query, *args, **kwargs)
            if self._answers is not None:
                self._answers.append(answer)
            return answer

        return counted


async def test_a_compare_and_set_answers_a_document_only_when_it_did_not_write(
    pg, monkeypatch
) -> None:
    """Every part of a statement sees the rows as they were before it, so a written row's
    document in the answer is the one it replaced, which no caller reads: it is left out.
    When the row had changed (another replica wrote it), the answer brings the current
    document, and the write is decided again on it without a read."""
    from .test_storage_contract import agent, record

    a, b = PostgresStorage(pg.url), PostgresStorage(pg.url)
    await a.open()
    await b.open()
    try:
        await a.save_agent(agent("a1"))
        assert (await b.get_agent("a1")) is not None  # b's sight of a1, soon stale
        await a.record_state(record("a1", "active", 1), history_limit=5)
        sent: list[str] = []
        answers: list = []
        pooled = b._conn

        @contextlib.asynccontextmanager
        async def counting():
            async with pooled() as conn:
                yield _Counted(conn, sent, answers)

        monkeypatch.setattr(b, "_conn", counting)
        written, _ = await b.record_state(record("a1", "idle", 2), history_limit=5)
        assert written.state == "idle"
        assert len(sent) == 2  # refused on the stale sight, then written: no read between
        refused, accepted = answers
        assert refused[0] is None and '"state":"active"' in refused[1]
        assert accepted[0] == 1 and accepted[1] is None
        assert (await a.get_agent("a1")).state == "idle"
    finally:
        await a.close()
        await b.close()


async def test_a_hand_over_takes_the_slot_and_moves_the_task_in_one_statement(
    pg, monkeypatch
) -> None:
    """The dispatcher's hand-over (``update_task(claim_slot_of=...)``) is on every task's
    path: one round trip when this replica's sight of both rows is current, not two (the
    slot, then the task) or three (and the slot given back)."""
    from .test_storage_contract import agent, task

    store = PostgresStorage(pg.url)
    await store.open()
    try:
        await store.save_agent(agent("w", max_concurrency=1))
        await store.save_tasks([task(t, status=TaskStatus.QUEUED) for t in ("t1", "t2")])
        sent = _count_statements(store, monkeypatch)
        start = {"status": TaskStatus.DISPATCHED, "agent_id": "w"}
        started = await store.update_task("t1", start, expect=["queued"], claim_slot_of="w")
        assert started is not None and started.status == TaskStatus.DISPATCHED
        assert len(sent) == 1
        sent.clear()
        # a move that does not apply takes no slot and writes nothing (a refusal decided on
        # this replica's sight is checked against the row: one read)
        assert await store.update_task("t1", start, expect=["queued"], claim_slot_of="w") is None
        assert sent == ["SELECT doc FROM opscore_tasks WHERE task_id = $1"]
        sent.clear()
        with pytest.raises(NoFreeSlotError):  # full, as the row says: nothing written
            await store.update_task("t2", start, expect=["queued"], claim_slot_of="w")
        assert sent == ["SELECT doc FROM opscore_agents WHERE agent_id = $1"]
    finally:
        await store.close()
    checker = PostgresStorage(pg.url)
    await checker.open()
    try:
        assert (await checker.get_agent("w")).active_tasks == ["t1"]
        assert (await checker.get_task("t1")).status == TaskStatus.DISPATCHED
        assert (await checker.get_task("t2")).status == TaskStatus.QUEUED
    finally:
        await checker.close()


async def test_an_agent_and_a_task_are_written_together_or_not_at_all(pg) -> None:
    """``opscore_agent_and_task`` (migration 6), what a state report and a hand-over call:
    both rows written only if each still holds the document decided on, and what goes with
    them (the history's record and its trim, the queue entry acknowledged, the next step
    queued with its NOTIFY, the run ended) only then."""
    from opscore.storage.postgres.base import AGENT_AND_TASK, CHANNEL, agent_and_task_args

    store = PostgresStorage(pg.url)
    await store.open()  # the schema, functions included
    await store.close()
    conn, listener = await _connect(pg.url), await _connect(pg.url)
    heard: list[str] = []
    await listener.add_listener(CHANNEL, lambda *args: heard.append(args[-1]))
    now = utcnow()

    def d(name: str) -> str:  # a document (JSON: the tasks' sweep_at is computed from it)
        return f'{{"v": "{name}"}}'

    try:
        await conn.execute("INSERT INTO opscore_agents VALUES ('a1', 'busy', $1, $2)", now, d("A0"))
        await conn.execute(
            "INSERT INTO opscore_tasks (task_id, session_id, status, doc) VALUES "
            "('t1', 's1', 'running', $1), ('t2', 's1', 'pending', $2)",
            d("T0"),
            d("N0"),
        )
        await conn.execute(
            "INSERT INTO opscore_sessions (session_id, status, doc) VALUES ('s1', 'running', $1)",
            d("S0"),
        )
        for n in range(3):
            await conn.execute(
                "INSERT INTO opscore_state_history (agent_id, doc) VALUES ('a1', $1)", f"old{n}"
            )

        async def call(agent_guess: str, task_guess: str, **more):
            args = agent_and_task_args(
                ("a1", "idle", now, d("A1"), d(agent_guess)),
                ("t1", "completed", d("T1"), d(task_guess)),
                **more,
            )
            written, agent_doc, task_doc, followed = await conn.fetchrow(AGENT_AND_TASK, *args)
            return written, _name(agent_doc), _name(task_doc), followed

        async def rows() -> tuple:
            return tuple(
                await conn.fetchrow(
                    "SELECT (SELECT doc::json->>'v' FROM opscore_agents), "
                    "(SELECT string_agg(task_id || '=' || (doc::json->>'v'), ',' ORDER BY task_id)"
                    " FROM opscore_tasks), (SELECT doc::json->>'v' FROM opscore_sessions), "
                    "(SELECT string_agg(doc, ',' ORDER BY id) FROM opscore_state_history), "
                    "(SELECT string_agg(task_id, ',') FROM opscore_queue)"
                )
            )

        before = await rows()
        step = ("t2", "queued", d("N1"), d("N0"), 0, now, CHANNEL, "someone-else")
        # Given a stale sight of the agent, or of the task: nothing at all is written, and
        # the answer brings both rows as they are
        assert await call("stale", "T0", report="R", next_step=step) == (False, "A0", "T0", False)
        assert await call("A0", "stale", report="R", next_step=step) == (False, "A0", "T0", False)
        assert await rows() == before
        # Given both sights current: both rows, the record (the history trimmed to the one
        # before it), and the next step queued, with the replicas told
        assert await call("A0", "T0", report="R", kept=1, next_step=step) == (
            True,
            None,
            None,
            True,
        )
        assert await rows() == ("A1", "t1=T1,t2=N1", "S0", "old2,R", "t2")
        for _ in range(100):  # the NOTIFY arrives on the listener's connection
            if heard:
                break
            await asyncio.sleep(0.02)
        assert heard == ["someone-else"]
        # A step that moved on meanwhile is not queued again; the two rows are still written
        await conn.execute("DELETE FROM opscore_queue")
        assert await call("A1", "T1", next_step=step) == (True, None, None, False)
        assert (await rows())[4] is None
        # The run's end is written only on the session's current document
        end = ("s1", "completed", "wf", None, now, d("S1"))
        assert await call("A1", "T1", run_end=(*end, d("stale"))) == (True, None, None, False)
        assert (await rows())[2] == "S0"
        assert await call("A1", "T1", run_end=(*end, d("S0"))) == (True, None, None, True)
        assert (await rows())[2] == "S1"
        # A hand-over acknowledges the task's entry while it is still leased
        await conn.execute(
            "INSERT INTO opscore_queue VALUES ('t1', 0, $1, 1, $2)", now, now + timedelta(30)
        )
        assert await call("A1", "T1", ack=True) == (True, None, None, False)
        assert await conn.fetchval("SELECT count(*) FROM opscore_queue") == 0
    finally:
        await conn.close()
        await listener.close()


def _name(doc: str | None) -> str | None:
    return None if doc is None else json.loads(doc)["v"]


async def test_the_queue_is_vacuumed_as_it_churns_not_once_a_minute(pg) -> None:
    """Each lease, ack and put-back leaves a dead row in the queue, which the claim's scan
    in queue order steps over until a vacuum: the store vacuums the table itself once its
    own writes there left enough of them (``upkeep.py``), without waiting for autovacuum."""
    from opscore.storage.postgres.upkeep import Vacuums

    from .test_storage_contract import task

    store = PostgresStorage(pg.url)
    await store.open()
    store._vacuums = Vacuums(store._vacuum, after=20)
    try:
        await store.save_tasks([task(f"t{i}", status=TaskStatus.QUEUED) for i in range(15)])
        for i in range(15):
            await store.enqueue(f"t{i}", priority=0, ready_at=utcnow())
        claimed = await store.dequeue_ready(utcnow(), 15)  # 15 leases
        await store.ack([e.task_id for e in claimed[:5]])  # 20 dead rows: a vacuum
        vacuums = "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'opscore_queue'"
        for _ in range(200):  # it runs in the background; its count shows soon after
            if pg.sql(vacuums) != "0":
                break
            await asyncio.sleep(0.05)
        assert pg.sql(vacuums) == "1"
        # and the queue is as it was: ten entries leased, the rest gone
        assert await store.queue_depth() == 10
    finally:
        await store.close()


async def test_a_vacuum_that_fails_is_left_for_the_next_rows_and_one_runs_at_a_time() -> None:
    from opscore.storage.postgres.upkeep import QUEUE, Vacuums

    started: list[str] = []
    release = asyncio.Event()

    async def vacuum(table: str) -> None:
        started.append(table)
        await release.wait()
        raise StorageError("PostgreSQL went away")

    vacuums = Vacuums(vacuum, after=3)
    vacuums.left(QUEUE, 2)
    await asyncio.sleep(0)
    assert started == []
    vacuums.left(QUEUE)  # three: one starts
    vacuums.left(QUEUE, 5)  # while it runs, the rows wait for the next
    await asyncio.sleep(0)
    assert started == [QUEUE]
    release.set()
    for _ in range(100):
        if not vacuums._running:
            break
        await asyncio.sleep(0.01)
    assert not vacuums._running  # its failure was logged, not raised
    vacuums.left(QUEUE)  # the five before and this one: the next starts
    await asyncio.sleep(0)
    assert started == [QUEUE, QUEUE]
    await vacuums.stop()
    assert not vacuums._running


async def test_a_telemetry_batch_committed_late_is_still_read_once(pg) -> None:
    """A row's id comes from a sequence when its transaction starts, so a publish that
    commits late has a smaller id than one read already: the reader looks back, reads it,
    and reads nothing twice (the rows it has seen come back without their data)."""
    store = PostgresStorage(pg.url)
    await store.open()
    try:
        await store.publish_telemetry("r1", [("log", '{"n": 1}')])
        late = int(pg.sql("SELECT nextval('opscore_telemetry_id_seq')"))  # taken, not committed
        await store.publish_telemetry("r1", [("log", '{"n": 2}')])
        cursor, first = await store.read_telemetry(None, 100, passing_over="me")
        assert [d for _, _, _, d in first] == ['{"n": 1}', '{"n": 2}']
        batch = '[["log", "{\\"n\\": 3}"]]'
        pg.sql(
            "INSERT INTO opscore_telemetry (id, origin, kind, data) "
            f"VALUES ({late}, 'r2', 'batch', '{batch}')"
        )
        cursor, again = await store.read_telemetry(cursor, 100, passing_over="me")
        assert [(o, d) for _, o, _, d in again] == [("r2", '{"n": 3}')]
        assert (await store.read_telemetry(cursor, 100, passing_over="me"))[1] == []
    finally:
        await store.close()


async def test_the_oldest_queued_run_is_one_step_of_its_index_even_in_a_generic_plan(pg) -> None:
    """Admissions read the oldest queued run of a workflow at each run's end: migration 7's
    partial index answers it, including once PostgreSQL plans the statement generically (a
    status passed as a parameter could not use an index over the queued runs only)."""
    from opscore.storage.postgres.runs import _OLDEST_QUEUED

    from .test_storage_contract import session

    store = PostgresStorage(pg.url)
    await store.open()
    try:
        for i, workflow_id in enumerate(["other", "w", "other", "w"]):
            queued = session(f"q{i}", workflow_id=workflow_id, status=SessionStatus.QUEUED)
            await store.save_session(queued)
        found = await store.oldest_session(status="queued", workflow_id="w")
        assert found is not None and found.session_id == "q1"
    finally:
        await store.close()
    plan = pg.sql(
        "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; "
        f"PREPARE oldest(text) AS {_OLDEST_QUEUED}; EXPLAIN EXECUTE oldest('w')"
    )
    assert "opscore_sessions_queued" in plan and "Sort" not in plan, plan


async def test_a_workflows_runs_are_listed_and_counted_from_its_index(pg) -> None:
    """Migration 8: the console's runs of a workflow, counted and paged without a scan of
    every run kept."""
    from .test_storage_contract import session

    store = PostgresStorage(pg.url)
    await store.open()
    try:
        for i in range(6):
            await store.save_session(session(f"l{i}", workflow_id="w" if i % 2 else "other"))
        page = await store.list_sessions(
            status=None, workflow_id="w", agent_id=None, offset=0, limit=2
        )
        assert page.total == 3 and [s.session_id for s in page.items] == ["l5", "l3"]
    finally:
        await store.close()
    for query in (
        "SELECT count(*) FROM opscore_sessions WHERE workflow_id = 'w'",
        "SELECT doc FROM opscore_sessions WHERE workflow_id = 'w' ORDER BY seq DESC LIMIT 20",
    ):
        plan = pg.sql(f"SET enable_seqscan = off; SET enable_bitmapscan = off; EXPLAIN {query}")
        assert "opscore_sessions_workflow" in plan and "Sort" not in plan, plan
