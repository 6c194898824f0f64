"""What the Redis store asks Redis, counted with INFO commandstats on a real redis-server.

Issue 14 counts every command a store sends, scripts' own included: a command a script
calls costs Redis a dispatch each. So a change of several records reads them with one MGET
and writes them with one MSET, and the queue's scripts take several entries with one
command of each kind. These tests fail when a script goes back to one command per record.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from opscore.models import SessionStatus, TaskStatus, utcnow

from .test_storage_contract import agent, session, task


async def test_a_change_of_two_records_reads_and_writes_them_with_one_command_each(
    redis_counted,
) -> None:
    store, calls = redis_counted
    await store.create_agent(agent("a1", max_concurrency=2))
    await store.save_tasks([task("t0", status=TaskStatus.QUEUED)])
    await store.get_agent("a1")  # decided on what this process read: no read before the write
    await store.get_task("t0")
    before = {name: calls(name) for name in ("evalsha", "mget", "mset", "get", "set")}
    total = calls()
    started = await store.update_task(
        "t0", {"status": TaskStatus.DISPATCHED}, expect=["queued"], claim_slot_of="a1"
    )
    assert started is not None and (await store.get_agent("a1")).active_tasks == ["t0"]
    # the script, its MGET and MSET, the in-flight index; then get_agent's own GET
    assert {name: calls(name) - n for name, n in before.items()} == {
        "evalsha": 1,
        "mget": 1,
        "mset": 1,
        "get": 1,
        "set": 0,
    }
    assert calls() - total == 5  # evalsha, mget, mset, sadd, get


async def test_an_attempt_that_starts_acknowledges_its_entry_in_its_own_script(
    redis_counted,
) -> None:
    """``ack_entry``: the entry's three commands run inside the start's script, at its end;
    acknowledged on its own, the same three cost a script call more (a round trip)."""
    store, calls = redis_counted
    now = utcnow()
    await store.create_agent(agent("a1", max_concurrency=2))
    await store.save_tasks([task(t, status=TaskStatus.QUEUED) for t in ("t0", "t1")])
    for t in ("t0", "t1"):
        await store.enqueue(t, priority=0, ready_at=now)
    assert len(await store.dequeue_ready(now, 10)) == 2  # both leased, their tasks read
    await store.get_agent("a1")
    await store.ack(["none"])  # a script's first call loads it: counted apart
    start = {"status": TaskStatus.DISPATCHED}

    def cost() -> tuple[int, int]:
        return calls("evalsha"), calls()

    evalsha, total = cost()
    assert await store.update_task(
        "t0", start, expect=["queued"], claim_slot_of="a1", ack_entry=True
    )
    with_ack = (calls("evalsha") - evalsha, calls() - total)
    evalsha, total = cost()
    assert await store.update_task("t1", start, expect=["queued"], claim_slot_of="a1")
    without = (calls("evalsha") - evalsha, calls() - total)
    evalsha, total = cost()
    await store.ack(["t1"])
    alone = (calls("evalsha") - evalsha, calls() - total)
    assert with_ack == (1, without[1] + 3)  # zrem leased, hdel meta, zrem since
    assert alone == (1, 4)
    assert await store.oldest_ready_at(now) is None and await store.queue_depth() == 0


async def test_a_change_reads_only_the_records_this_process_has_no_guess_of(
    redis_counted,
) -> None:
    """The task was written by another replica (or its guess pushed out by a backlog of
    runs); the agent's guess is fresh. One GET, for the task, then the script."""
    store, calls = redis_counted
    await store.create_agent(agent("a1", max_concurrency=2))
    await store.get_agent("a1")
    other = type(store)(store.url)
    await other.open()
    try:
        await other.save_tasks([task("t0", status=TaskStatus.QUEUED)])
    finally:
        await other.close()
    before = {name: calls(name) for name in ("evalsha", "get")}
    started = await store.update_task(
        "t0", {"status": TaskStatus.DISPATCHED}, expect=["queued"], claim_slot_of="a1"
    )
    assert started is not None
    assert {name: calls(name) - n for name, n in before.items()} == {"evalsha": 1, "get": 1}
    assert (await store.get_agent("a1")).active_tasks == ["t0"]


async def test_a_refused_change_answers_every_record_from_its_one_read(redis_counted) -> None:
    """Decided on a stale sight, the script writes nothing and answers what Redis holds;
    the change is decided again on that and goes through at the second script."""
    store, calls = redis_counted
    await store.create_agent(agent("a1", max_concurrency=2))
    await store.save_tasks([task("t0", status=TaskStatus.QUEUED)])
    await store.get_agent("a1")
    await store.get_task("t0")
    other = type(store)(store.url)  # another replica changes the agent meanwhile
    await other.open()
    try:
        await other.update_agent("a1", {"max_concurrency": 3})
    finally:
        await other.close()
    before_mget, before_mset = calls("mget"), calls("mset")
    started = await store.update_task(
        "t0", {"status": TaskStatus.DISPATCHED}, expect=["queued"], claim_slot_of="a1"
    )
    assert started is not None
    found = await store.get_agent("a1")
    assert found.max_concurrency == 3 and found.active_tasks == ["t0"]
    assert (calls("mget") - before_mget, calls("mset") - before_mset) == (2, 1)


async def test_taking_many_entries_costs_the_commands_of_taking_one(redis_counted) -> None:
    store, calls = redis_counted
    now = utcnow()

    async def take(count: int) -> int:
        for i in range(count):
            await store.enqueue(f"e{count}-{i}", priority=0, ready_at=now)
        before = calls()
        entries = await store.dequeue_ready(now + timedelta(seconds=1), count)
        assert [e.task_id for e in entries] == [f"e{count}-{i}" for i in range(count)]
        await store.ack([e.task_id for e in entries])
        return calls() - before

    await take(1)  # Redis loads the scripts at their first use
    one, many = await take(1), await take(40)
    assert many <= one + 1  # the acknowledgement of many asks which are leased first


async def test_a_due_entry_is_queued_with_three_commands_and_a_delayed_one_with_four(
    redis_counted,
) -> None:
    """Its sequence, its ready-at ('since') and its place: a due entry's score in the ready
    set says all the queue needs; a delayed one keeps that score aside (meta) until due."""
    store, calls = redis_counted
    now = utcnow()
    await store.enqueue("warm", priority=0, ready_at=now)  # Redis loads the script
    before = calls()
    await store.enqueue("due", priority=3, ready_at=now)
    assert calls() - before == 4  # evalsha, incr, zadd since, zadd ready
    before = calls()
    await store.enqueue("later", priority=3, ready_at=now + timedelta(seconds=5))
    assert calls() - before == 5  # evalsha, incr, zadd since, hset meta, zadd delayed


async def test_entries_of_an_older_release_come_back_at_their_place(redis_counted) -> None:
    """An older release kept "score|priority|seq" in the queue's meta for every entry: a
    delayed entry that falls due, and a leased one whose lease ran out, keep their place."""
    from opscore.storage.redis.queue_scripts import SEQ_SPAN

    store, _ = redis_counted
    delayed, _, leased, meta = store._queue_keys
    since = store.k("q", "since")
    now = utcnow().timestamp()
    redis = store._redis
    await redis.set(store.k("seq", "queue"), 100)  # the older release queued 100 entries
    for task_id, priority, seq, where, at in (
        ("old-delayed", 5, 7, delayed, now - 1),
        ("old-leased", 9, 8, leased, now - 1),
    ):
        score = (1000 - priority) * SEQ_SPAN + seq
        await redis.hset(meta, task_id, f"{score}|{priority}|{seq}")
        await redis.zadd(where, {task_id: at})
        await redis.zadd(since, {task_id: now - 60})
    await store.enqueue("new", priority=5, ready_at=utcnow())
    got = await store.dequeue_ready(utcnow(), 10)
    assert [(e.task_id, e.priority, e.seq) for e in got][:2] == [
        ("old-leased", 9, 8),
        ("old-delayed", 5, 7),
    ]
    assert got[2].task_id == "new" and got[2].priority == 5
    await store.ack([e.task_id for e in got])
    assert await store.queue_depth() == 0 and await redis.hlen(meta) == 0


async def test_a_runs_tasks_are_written_with_one_command_of_each_kind(redis_counted) -> None:
    store, calls = redis_counted

    async def start(run: str, steps: int) -> int:
        tasks = [task(f"{run}-{i}", session_id=run) for i in range(steps)]
        before = calls()
        await store.save_run(session(run), tasks)
        return calls() - before

    await start("warm", 1)
    assert await start("one", 1) == await start("many", 30)
    _, tasks = await store.session_with_tasks("many")
    assert [t.task_id for t in tasks] == [f"many-{i}" for i in range(30)]
    # a run as it starts has only new tasks: one MSETNX writes them, nothing is read first
    kinds = ("msetnx", "mget", "mset")
    before = {name: calls(name) for name in kinds}
    await start("new", 3)
    assert {n: calls(n) - c for n, c in before.items()} == {"msetnx": 1, "mget": 0, "mset": 0}
    _, tasks = await store.session_with_tasks("new")
    assert [t.task_id for t in tasks] == ["new-0", "new-1", "new-2"]
    # written again, a run keeps each task once, in its place: MSETNX writes nothing, and the
    # old records are read and replaced
    before = {name: calls(name) for name in kinds}
    again = task("many-3", session_id="many", priority=9)
    await store.save_run(session("many"), [again, task("x", "many")])
    assert {n: calls(n) - c for n, c in before.items()} == {"msetnx": 1, "mget": 1, "mset": 1}
    _, tasks = await store.session_with_tasks("many")
    assert [t.task_id for t in tasks] == [*(f"many-{i}" for i in range(30)), "x"]
    assert (await store.get_task("many-3")).priority == 9  # replaced


async def test_a_new_runs_session_takes_its_place_with_two_commands(redis_counted) -> None:
    """A run as it starts: its session is new, so its place is taken at once (INCR, ZADD
    NX), with no ZSCORE first. Saved again by a process that never saw it (the hint is
    wrong), it keeps its place among the sessions."""
    store, calls = redis_counted
    before = {name: calls(name) for name in ("zscore", "incr", "zadd")}
    await store.save_run(session("r1"), [])
    # the place in the index of all sessions and in the status index
    assert {n: calls(n) - c for n, c in before.items()} == {"zscore": 0, "incr": 1, "zadd": 2}
    await store.save_run(session("r2"), [])
    other = type(store)(store.url)  # another replica, which never saw r1
    await other.open()
    try:
        await other.save_run(session("r1", status=SessionStatus.COMPLETED), [])
    finally:
        await other.close()
    page = await store.list_sessions(
        status=None, workflow_id=None, agent_id=None, offset=0, limit=10
    )
    assert [s.session_id for s in page.items] == ["r2", "r1"]
    for status, ids in (("completed", ["r1"]), (session("x").status.value, ["r2"])):
        found = await store.list_sessions(
            status=status, workflow_id=None, agent_id=None, offset=0, limit=10
        )
        assert [s.session_id for s in found.items] == ids and found.total == 1
    assert (await store.get_session("r1")).status == SessionStatus.COMPLETED


async def test_a_redis_too_old_for_the_scripts_is_refused_at_start(
    redis_server, monkeypatch
) -> None:
    """The scripts use SET ... GET and ZMSCORE (Redis 6.2): an older server is named at
    start, not met with a script error at the first run."""

    from opscore.errors import StorageError
    from opscore.storage import storage_from_url
    from opscore.storage.redis import server

    assert server.version_of("7.0.15") == (7, 0, 15) and server.version_of("6.2-rc1") == (6,)
    monkeypatch.setattr(server, "MIN_VERSION", (99, 0))
    store = storage_from_url(redis_server.url)
    with pytest.raises(StorageError, match=r"is version \d+\.\d+\.\d+; Ops-Core needs 99.0"):
        await store.open()


async def test_a_state_report_writes_its_history_in_the_agents_mset(redis_counted) -> None:
    """The report takes the next number of the agent's history and is written under it in
    the MSET that writes the agent: the script, its MGET and its MSET, nothing else (a list
    cost an LPUSH per report, and an LTRIM and a SET in steps)."""
    from .test_storage_contract import record

    store, calls = redis_counted
    await store.create_agent(agent("a1"))
    await store.record_state(record("a1", "idle", 0), history_limit=8)
    total = calls()
    for i in range(1, 6):
        await store.record_state(record("a1", "active" if i % 2 else "idle", i), history_limit=8)
    assert calls() - total == 5 * 3  # evalsha, mget, mset per report
    assert calls("lpush") == calls("ltrim") == 0


async def test_the_state_history_is_trimmed_in_steps_and_shows_what_it_keeps(
    redis_counted,
) -> None:
    """One DEL per quarter of the history's length, not one per report; every page shows
    the newest ``history_limit`` records only, also between two steps."""
    import redis

    from .test_storage_contract import record

    store, calls = redis_counted
    await store.create_agent(agent("a1"))
    before = calls("del")
    for i in range(60):
        await store.record_state(record("a1", "active" if i % 2 else "idle", i), history_limit=8)
        history = await store.state_history("a1", offset=0, limit=100)
        assert history.total == min(i + 1, 8)
        assert [r.timestamp for r in history.items] == [
            record("a1", "idle", j).timestamp for j in range(i, max(i - 8, -1), -1)
        ]
    # the first when the history passes 10 (8 and a quarter), at the 11th report; then at
    # every 3rd: 17 steps for 60 reports
    assert calls("del") - before == (60 - 11) // 3 + 1
    page = await store.state_history("a1", offset=6, limit=5)
    assert page.total == 8 and [r.timestamp for r in page.items] == [
        record("a1", "idle", j).timestamp for j in (53, 52)
    ]
    assert (await store.state_history("a1", offset=9, limit=5)).items == []
    before = calls("mget")
    count = await store.state_history("a1", offset=0, limit=0)  # a count alone: no page read
    assert (count.total, count.items, calls("mget")) == (8, [], before)
    # what is kept is all there is: the 8 shown and at most a quarter more, no leftovers
    admin = redis.Redis.from_url(store.url)
    assert 8 <= len(admin.keys("opscore:hist:a1:*")) <= 10
    admin.close()


async def test_a_smaller_history_limit_shows_at_once_and_is_kept_at_the_next_report(
    redis_counted,
) -> None:
    """A smaller ``OPSCORE_STATE_HISTORY_LIMIT`` shows the smaller count at once, and the
    report that brings it drops what the smaller limit no longer keeps."""
    import redis

    from .test_storage_contract import record

    store, _ = redis_counted
    await store.create_agent(agent("a1"))
    for i in range(60):
        await store.record_state(record("a1", "idle", i), history_limit=8)
    for i in range(60, 62):
        await store.record_state(record("a1", "idle", i), history_limit=4)
        history = await store.state_history("a1", offset=0, limit=100)
        assert history.total == 4
        assert [r.timestamp for r in history.items] == [
            record("a1", "idle", j).timestamp for j in range(i, i - 4, -1)
        ]
    admin = redis.Redis.from_url(store.url)
    assert len(admin.keys("opscore:hist:a1:*")) <= 5
    admin.close()


async def test_a_history_an_earlier_version_kept_as_a_list_is_read_until_it_is_dropped(
    redis_counted,
) -> None:
    """A list an earlier version kept (newest first, at exactly its bound, no count of what
    it keeps) is read after the numbered reports, as older ones; the first step of
    deletions drops it, and the page still shows the newest the limit keeps."""
    import redis

    from .test_storage_contract import record

    store, _ = redis_counted
    await store.create_agent(agent("a1"))
    admin = redis.Redis.from_url(store.url)
    admin.lpush(
        "opscore:history:a1", *(record("a1", "idle", i).model_dump_json() for i in range(5))
    )
    await store.record_state(record("a1", "active", 10), history_limit=5)
    history = await store.state_history("a1", offset=0, limit=100)
    assert history.total == 5 and history.items[0].state == "active"
    assert [r.timestamp for r in history.items[1:]] == [
        record("a1", "idle", j).timestamp for j in (4, 3, 2, 1)
    ]
    page = await store.state_history("a1", offset=1, limit=2)  # a page across both kinds
    assert [r.timestamp for r in page.items] == [record("a1", "idle", j).timestamp for j in (4, 3)]
    for i in range(11, 17):  # the history passes 6 (5 and one): its first step
        await store.record_state(record("a1", "idle", i), history_limit=5)
    assert not admin.exists("opscore:history:a1")
    history = await store.state_history("a1", offset=0, limit=100)
    assert [r.timestamp for r in history.items] == [
        record("a1", "idle", j).timestamp for j in range(16, 11, -1)
    ]
    admin.close()


async def test_a_deleted_agent_leaves_no_history_behind(redis_counted) -> None:
    """Every numbered report, the span and a list an earlier version kept go with the
    agent; an agent registered again under its id starts a history of its own."""
    import redis

    from .test_storage_contract import record

    store, _ = redis_counted
    admin = redis.Redis.from_url(store.url)
    await store.create_agent(agent("a1"))
    admin.lpush("opscore:history:a1", record("a1", "idle", 0).model_dump_json())
    for i in range(1, 8):
        await store.record_state(record("a1", "idle", i), history_limit=100)
    assert await store.delete_agent("a1") is not None
    assert admin.keys("opscore:*hist*a1*") == []
    await store.create_agent(agent("a1"))
    await store.record_state(record("a1", "active", 20), history_limit=100)
    history = await store.state_history("a1", offset=0, limit=100)
    assert history.total == 1 and history.items[0].state == "active"
    admin.close()


async def test_a_completion_reads_its_run_along_with_one_command(redis_counted) -> None:
    """The session and its tasks, read along with a task's completion, go out as one MGET
    (after the LRANGE that names the tasks), not one GET each."""
    store, calls = redis_counted
    await store.save_session(session("s1"))
    await store.save_tasks([task(f"t{i}", status=TaskStatus.RUNNING) for i in range(3)])
    await store.get_task("t0")
    before = {name: calls(name) for name in ("mget", "get", "lrange")}
    await store.update_task("t0", {"status": TaskStatus.COMPLETED})
    found, tasks = await store.session_with_tasks("s1")  # read along: nothing asked
    assert found is not None and [t.status for t in tasks] == [
        TaskStatus.COMPLETED,
        TaskStatus.RUNNING,
        TaskStatus.RUNNING,
    ]
    # the record's own MGET, then the run's
    assert {name: calls(name) - n for name, n in before.items()} == {
        "mget": 2,
        "get": 0,
        "lrange": 1,
    }


async def test_a_completion_that_ends_its_run_completes_it_in_the_same_script(
    redis_counted,
) -> None:
    """The run's last step (TaskUpdate.ends_run): the run is completed in the same script,
    one MGET and one MSET for both records; and not read along (no LRANGE), since it is
    not read back."""
    from opscore.storage.report_and_task import RunEnd, TaskUpdate

    store, calls = redis_counted
    await store.save_session(session("s1", status=SessionStatus.RUNNING))
    await store.save_tasks([task("t0", status=TaskStatus.RUNNING)])
    await store.get_task("t0")
    await store.get_session("s1")
    before = {name: calls(name) for name in ("evalsha", "mget", "mset", "lrange")}
    end = RunEnd("s1", {"status": SessionStatus.COMPLETED})
    last = TaskUpdate({"status": TaskStatus.COMPLETED}, expect=["running"], ends_run=end)
    done, _, ended = await store.update_task_and_next("t0", last)
    assert done is not None and done.status == TaskStatus.COMPLETED
    assert ended is not None and ended.status == SessionStatus.COMPLETED
    assert {name: calls(name) - n for name, n in before.items()} == {
        "evalsha": 1,
        "mget": 1,
        "mset": 1,
        "lrange": 0,
    }
    assert (await store.get_session("s1")).status == SessionStatus.COMPLETED


async def test_a_completion_that_queues_the_next_step_is_one_script(redis_counted) -> None:
    """The report, the completion and the next step's move to queued (TaskUpdate.then) go
    out as one script with one MGET and one MSET; the run is not read along, since it does
    not advance then."""
    from .test_storage_contract import MoveOnReport, record, running_then_next, then_queue_t2

    store, calls = redis_counted
    await store.save_session(session("s1"))
    await running_then_next(store)
    end = MoveOnReport(TaskStatus.COMPLETED, ["running"], release=True, then=then_queue_t2())
    before = {name: calls(name) for name in ("evalsha", "mget", "mset", "lrange", "zadd")}
    written = await store.record_report(record("a1", "idle", 1), history_limit=5, plan=end)
    assert written.queued is not None and written.queued.status == TaskStatus.QUEUED
    assert {name: calls(name) - n for name, n in before.items()} == {
        "evalsha": 1,
        "mget": 1,
        "mset": 1,
        "lrange": 0,
        "zadd": 2,  # the queue's entry, and when it was queued (oldest_ready_at)
    }


async def test_a_claim_with_other_replicas_up_brings_the_rows_a_completion_writes_along(
    redis_counted, redis_server
) -> None:
    """Replica A started a run (t1, then t2, its end); replica B claims its tasks with other
    replicas up (``follows``), and the agent reports to B. Each claim reads the row the
    task's completion may write along (t2's, then the run's session) with one MGET more,
    and each report is then one script: B reads no row first. Alone (no ``follows``), a
    claim reads nothing more."""
    from opscore.models import NextStep
    from opscore.storage import storage_from_url

    from .test_storage_contract import carried_run, record

    b, calls = redis_counted
    a = storage_from_url(redis_server.url)
    await a.open()
    try:
        await b.save_agent(agent("a1"))
        await b.record_state(record("a1", "idle", 0), history_limit=5)  # it reports to B
        start = {"status": TaskStatus.DISPATCHED, "agent_id": "a1"}
        for i, (task_id, plan) in enumerate(await carried_run(a)):
            mgets = calls("mget")
            (claimed,) = await b.dequeue_ready(utcnow(), 10, follows=True)
            assert claimed.task_id == task_id
            assert calls("mget") - mgets == 2  # the task's record, and the row after it
            assert await b.update_task(task_id, start, expect=["queued"], claim_slot_of="a1")
            before = {name: calls(name) for name in ("evalsha", "get", "mget")}
            report = record("a1", "idle", i + 1, opscore_task_id=task_id)
            written = await b.record_report(report, history_limit=5, plan=plan)
            assert written.task is not None and written.task.status == TaskStatus.COMPLETED
            assert {name: calls(name) - n for name, n in before.items()} == {
                "evalsha": 1,
                "get": 0,
                "mget": 1,  # the script's own
            }
        assert written.ended is not None  # the last report completed the run with it
        assert (await a.get_session("s1")).status == SessionStatus.COMPLETED
        # alone: the claim reads the task's record only
        await a.save_tasks([task("t3", status=TaskStatus.QUEUED, next_step=NextStep(task_id="t2"))])
        await a.enqueue("t3", priority=0, ready_at=utcnow())
        mgets = calls("mget")
        (claimed,) = await b.dequeue_ready(utcnow(), 10)
        assert claimed.task_id == "t3" and calls("mget") - mgets == 1
    finally:
        await a.close()


async def test_the_row_a_claimed_record_names_is_its_own_next_step_or_session(
    redis_counted,
) -> None:
    """The claim finds the row after a task in the stored JSON (queue_scripts.FOLLOW_FN):
    its own ``next_step``, not one that parameters, results or reports before it name, nor
    one that a next step's parameters name; its session when it ends its run; none else."""
    from opscore.models import NextStep
    from opscore.storage.parsed import PARSED
    from opscore.storage.redis.queue_scripts import FOLLOW_FN

    store, _ = redis_counted
    lure = {"next_step": {"task_id": "lure"}, "ends_run": True}

    async def follows(record) -> str | None:
        raw = PARSED.dump(record)
        script = FOLLOW_FN + "return follow_key(ARGV[1])"
        args = [raw, "", "", "task:", "", "", "session:"]
        return await store._redis.eval(script, 0, *args)

    plain = task("t1", parameters=lure, resolved_parameters=lure, result=lure)
    assert await follows(plain) is None
    carrying = plain.model_copy(
        update={"next_step": NextStep(task_id="t2", parameters={"x": lure})}
    )
    assert await follows(carrying) == "task:t2"
    assert await follows(plain.model_copy(update={"ends_run": True})) == "session:s1"


async def test_leases_that_ran_out_are_looked_for_once_a_second(redis_counted) -> None:
    """A claim looks for entries whose lease ran out (30 s) at most once a second of the
    dispatcher's clock: one command less per claim under load, and a lost claim still comes
    back within a second of its lease's end."""
    store, calls = redis_counted
    now = utcnow()
    await store.enqueue("t", priority=0, ready_at=now)
    assert [e.task_id for e in await store.dequeue_ready(now, 1)] == ["t"]  # leased 30 s

    async def looks(at) -> tuple[int, list[str]]:
        before = calls("zrangebyscore")
        got = [e.task_id for e in await store.dequeue_ready(at, 1)]
        return calls("zrangebyscore") - before, got

    assert await looks(now + timedelta(seconds=0.5)) == (1, [])  # 'delayed' only
    assert await looks(now + timedelta(seconds=31)) == (2, ["t"])  # the lease ran out
    assert await looks(now + timedelta(seconds=31.5)) == (1, [])
    assert await looks(now + timedelta(seconds=5)) == (2, [])  # a clock that went back


async def test_a_runs_template_is_read_in_one_write_and_a_newer_one_at_once(
    redis_counted, redis_writes
) -> None:
    """Every run's start asks for its template's newest version: which version is newest
    and the content of the one this process last found newest go out together, so it costs
    one round trip, not two in turn. A version another replica saved since is read at once."""
    from opscore.models import WorkflowTemplate

    def tpl(version: str) -> WorkflowTemplate:
        return WorkflowTemplate(
            id="w", version=version, tasks=[{"taskId": version}], created_at=utcnow()
        )

    store, calls = redis_counted
    await store.save_workflow(tpl("1"))
    assert (await store.get_workflow("w", None)).version == "1"
    writes = redis_writes
    writes.clear()
    before = {name: calls(name) for name in ("lindex", "hget", "lrange")}
    assert [t.task_id for t in (await store.get_workflow("w", None)).tasks] == ["1"]
    assert writes == [2]
    assert {n: calls(n) - c for n, c in before.items()} == {"lindex": 1, "hget": 1, "lrange": 0}
    other = type(store)(store.url)
    await other.open()
    try:
        await other.save_workflow(tpl("2"))
    finally:
        await other.close()
    writes.clear()
    assert [t.task_id for t in (await store.get_workflow("w", None)).tasks] == ["2"]
    assert writes == [2, 1]  # the newest is another: its content read next
    assert await store.delete_workflow("w", None) == 2
    assert await store.get_workflow("w", None) is None


async def test_compare_and_sets_asked_together_go_out_as_one_script(redis_counted) -> None:
    """Three attempts started at the same moment (a dispatch pass): one script call and one
    MGET for the three, each write as it would be on its own."""
    import asyncio

    store, calls = redis_counted
    await asyncio.gather(*(store.create_agent(agent(f"a{i}")) for i in range(3)))  # loads it
    for i in range(3):
        await store.get_agent(f"a{i}")
    await store.save_tasks([task(f"t{i}", status=TaskStatus.QUEUED) for i in range(3)])
    for i in range(3):
        await store.get_task(f"t{i}")
    before = {name: calls(name) for name in ("evalsha", "mget", "mset", "get")}
    started = await asyncio.gather(
        *(
            store.update_task(
                f"t{i}", {"status": TaskStatus.DISPATCHED}, expect=["queued"], claim_slot_of=f"a{i}"
            )
            for i in range(3)
        )
    )
    assert [t.status for t in started] == [TaskStatus.DISPATCHED] * 3
    assert {name: calls(name) - n for name, n in before.items()} == {
        "evalsha": 1,
        "mget": 1,
        "mset": 3,
        "get": 0,
    }
    for i in range(3):
        assert (await store.get_agent(f"a{i}")).active_tasks == [f"t{i}"]


async def test_a_group_on_a_stale_guess_is_asked_again_and_the_others_land(
    redis_counted,
) -> None:
    """One of the groups was decided on a guess another replica made stale: only it is
    refused (and decided again on the values the script answered); the others are written.
    The same record asked for twice at once waits for the first write (one process)."""
    import asyncio

    store, _ = redis_counted
    await store.save_tasks([task(f"t{i}", status=TaskStatus.QUEUED) for i in range(3)])
    for i in range(3):
        await store.get_task(f"t{i}")
    other = type(store)(store.url)
    await other.open()
    try:
        await other.update_task("t1", {"status": TaskStatus.CANCELLED})
    finally:
        await other.close()
    moved = await asyncio.gather(
        *(
            store.update_task(f"t{i}", {"status": TaskStatus.DISPATCHED}, expect=["queued"])
            for i in (0, 1, 2, 2)
        )
    )
    assert [t.status if t else None for t in moved] == [
        TaskStatus.DISPATCHED,
        None,
        TaskStatus.DISPATCHED,
        None,
    ]
    assert (await store.get_task("t1")).status == TaskStatus.CANCELLED


async def test_groups_that_delete_records_read_them_each_in_turn(redis_counted) -> None:
    """A group that deletes (an agent with its history) may delete what a later group
    decided on: then each group reads its records in its turn, as scripts of its own would."""
    import asyncio

    store, calls = redis_counted
    for i in range(2):
        await store.create_agent(agent(f"a{i}"))
        await store.get_agent(f"a{i}")
    before = calls("mget")
    removed = await asyncio.gather(store.delete_agent("a0"), store.delete_agent("a1"))
    assert [a.agent_id for a in removed] == ["a0", "a1"]
    assert calls("mget") - before == 2
    assert await store.get_agent("a0") is None and await store.get_agent("a1") is None


async def test_a_session_moves_between_status_indexes_under_the_place_it_was_seen_taking(
    redis_counted,
) -> None:
    """The process that saved a session knows its place (its score in the indexes): a
    change of status moves it there with no ZSCORE. Another process, which never saw it
    take its place, reads it in the script, as before. Either way the index keeps the order."""
    store, calls = redis_counted
    for i in range(3):
        await store.save_session(session(f"r{i}"))
    before = calls("zscore")
    assert await store.update_session("r1", {"status": SessionStatus.COMPLETED}) is not None
    assert calls("zscore") == before
    other = type(store)(store.url)
    await other.open()
    try:
        for sid in ("r2", "r0"):
            await other.update_session(sid, {"status": SessionStatus.COMPLETED})
    finally:
        await other.close()
    assert calls("zscore") - before == 2
    done = await store.list_sessions(
        status="completed", workflow_id=None, agent_id=None, offset=0, limit=10
    )
    assert [s.session_id for s in done.items] == ["r2", "r1", "r0"]
    running = await store.list_sessions(
        status="running", workflow_id=None, agent_id=None, offset=0, limit=10
    )
    assert running.total == 0


async def test_a_group_that_fails_fails_alone(redis_counted) -> None:
    """A group whose command Redis refuses (here an index key that holds a string) answers
    its caller that error, as a script of its own would; the groups beside it land."""
    import asyncio

    import redis

    store, _ = redis_counted
    await store.save_tasks([task(f"t{i}", status=TaskStatus.QUEUED) for i in range(2)])
    await asyncio.gather(store.get_task("t0"), store.get_task("t1"))
    admin = redis.Redis.from_url(store.url)
    admin.set("opscore:not-a-set", "x")
    admin.close()

    def decide_with_bad_index(raw):
        return raw + " ", None, lambda p: p.sadd("opscore:not-a-set", "m")

    def decide(raw):
        return raw.replace('"queued"', '"cancelled"'), None, None

    bad, good = await asyncio.gather(
        store._cas("opscore:task:t0", decide_with_bad_index),
        store._cas("opscore:task:t1", decide),
        return_exceptions=True,
    )
    assert isinstance(bad, Exception) and "WRONGTYPE" in str(bad)
    assert good is None
    assert (await store.get_task("t1")).status == TaskStatus.CANCELLED


def test_a_history_span_is_read_as_stored_and_steps_by_a_quarter() -> None:
    """What the span key holds, parsed; anything else (absent, torn, negative) is an empty
    span. Adding a report past the limit and a quarter drops the oldest down to the limit."""
    from opscore.storage.redis.history import Span

    assert Span.parse("12 3 8") == Span(12, 3, 8)
    for raw in (None, "", "1 2", "x y z", "1 -2 3", "1 2 3 4"):
        assert Span.parse(raw) == Span()
    span, number, dropped = Span(10, 0, 8).add(8)
    assert (span, number, dropped) == (Span(11, 3, 8), 10, range(0, 3))
    span, number, dropped = Span(11, 3, 8).add(8)
    assert (span, number, dropped) == (Span(12, 3, 8), 11, range(0))
    assert Span(100, 0, 100).add(4) == (Span(101, 97, 4), 100, range(0, 97))
    assert Span.parse(Span(5, 1, 4).dump()) == Span(5, 1, 4)


async def test_the_oldest_queued_run_is_found_when_another_replica_admits_one_meanwhile(
    redis_counted, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``oldest_session`` reads the queued runs a chunk at a time by their place (score), not
    their rank: a run admitted by another replica between two chunks would otherwise shift
    the ranks and hide the run after the first chunk."""
    store, _ = redis_counted
    monkeypatch.setattr("opscore.storage.redis.sessions._FIRST_CHUNK", 2)
    queued = {"status": SessionStatus.QUEUED}
    for i, workflow_id in enumerate(["other", "other", "w", "w"]):
        await store.save_session(session(f"r{i}", workflow_id=workflow_id, **queued))
    batched = store._batched
    ranges = 0

    async def meanwhile(*command):
        nonlocal ranges
        if command[0] == "ZRANGE":
            ranges += 1
            if ranges == 2:  # after the first chunk: another replica admits r0
                await store.update_session("r0", {"status": SessionStatus.RUNNING})
        return await batched(*command)

    monkeypatch.setattr(store, "_batched", meanwhile)
    found = await store.oldest_session(status="queued", workflow_id="w")
    assert found is not None and found.session_id == "r2" and ranges == 2
