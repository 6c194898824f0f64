"""One contract suite, run against every storage backend (memory, SQLite, Redis, PostgreSQL)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from opscore.errors import ConflictError, NoFreeSlotError, NotFoundError, StorageError
from opscore.models import (
    Agent,
    DeadLetter,
    NextStep,
    Page,
    Session,
    SessionStatus,
    StateRecord,
    TaskRun,
    TaskStatus,
    WorkflowTemplate,
    utcnow,
)
from opscore.models.a2a import A2ATaskRef
from opscore.storage import storage_from_url
from opscore.storage.base import Storage
from opscore.storage.parsed import PARSED
from opscore.storage.report_and_task import QueuedNext, RunEnd, TaskUpdate

BACKENDS = ["memory", "sqlite", "redis", "postgresql"]


@pytest.fixture(params=BACKENDS)
async def store(request, tmp_path) -> Storage:
    if request.param == "memory":
        storage = storage_from_url("memory://")
    elif request.param == "sqlite":
        storage = storage_from_url(f"sqlite:///{tmp_path}/contract.db")
    else:
        server = request.getfixturevalue(f"{request.param}_server")
        server.flush()
        storage = storage_from_url(server.url)
    await storage.open()
    yield storage
    await storage.close()


def agent(agent_id: str, **fields) -> Agent:
    now = utcnow()
    return Agent(
        agent_id=agent_id,
        agent_name=agent_id,
        last_seen=now,
        registered_at=now,
        updated_at=now,
        **fields,
    )


# One base for every report's timestamp: taken per call, two reports made a moment apart
# across a second's boundary got the same timestamp for "0 s" and "1 s" (one run in ~1,000).
BASE = utcnow().replace(microsecond=0)
NOW = BASE


def agent_ids(agents) -> set[str]:
    return {a.agent_id for a in agents}


async def soon_shows(store: Storage, ids: set[str], timeout: float = 10.0) -> None:
    """Until a read of the available agents (idle) shows exactly ``ids``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (shown := agent_ids(await store.available_agents({"idle"}))) != ids:
        assert loop.time() < deadline, f"the fleet read shows {shown}, not {ids}"
        await asyncio.sleep(0.01)


def record(agent_id: str, state: str, seconds: float, **details) -> StateRecord:
    return StateRecord(
        agent_id=agent_id,
        state=state,
        timestamp=BASE + timedelta(seconds=seconds),
        details=details,
        received_at=utcnow(),
    )


def task(task_id: str, session_id: str = "s1", **fields) -> TaskRun:
    base = dict(
        task_id=task_id,
        session_id=session_id,
        step_id=task_id,
        timeout_seconds=5,
        max_attempts=3,
        backoff_seconds=1,
        max_backoff_seconds=5,
        created_at=utcnow(),
    )
    return TaskRun(**{**base, **fields})


def session(session_id: str, **fields) -> Session:
    now = utcnow()
    return Session(session_id=session_id, created_at=now, updated_at=now, **fields)


class TestAgents:
    async def test_create_is_insert_only(self, store: Storage) -> None:
        assert await store.create_agent(agent("a1", capabilities=["x"])) is None
        existing = await store.create_agent(agent("a1", capabilities=["other"]))
        assert existing is not None and existing.capabilities == ["x"]
        assert (await store.get_agent("a1")).capabilities == ["x"]

    async def test_list_filters_sorts_and_paginates(self, store: Storage) -> None:
        for i in (3, 1, 2, 0):
            await store.create_agent(agent(f"a{i}", capabilities=["even" if i % 2 == 0 else "odd"]))
        await store.record_state(record("a2", "idle", 1), history_limit=10)
        page = await store.list_agents(state=None, capability=None, offset=1, limit=2)
        assert page.total == 4 and [a.agent_id for a in page.items] == ["a1", "a2"]
        evens = await store.list_agents(state=None, capability="even", offset=0, limit=10)
        assert [a.agent_id for a in evens.items] == ["a0", "a2"]
        idle = await store.list_agents(state="idle", capability="even", offset=0, limit=10)
        assert [a.agent_id for a in idle.items] == ["a2"]

    async def test_agents_are_counted_by_state_where_they_are_kept(self, store: Storage) -> None:
        assert await store.agents_by_state() == {}
        for i, state in enumerate(["idle", "idle", "busy", None]):
            await store.create_agent(agent(f"a{i}", state=state))
        assert await store.agents_by_state() == {"idle": 2, "busy": 1, None: 1}
        await store.record_state(record("a3", "idle", 1), history_limit=10)
        await store.delete_agent("a2")
        assert await store.agents_by_state() == {"idle": 3}

    async def test_update_save_and_delete(self, store: Storage) -> None:
        await store.create_agent(agent("a1"))
        updated = await store.update_agent("a1", {"version": "2.0"})
        assert updated.version == "2.0" and (await store.get_agent("a1")).version == "2.0"
        assert await store.update_agent("nope", {"version": "x"}) is None
        await store.save_agent(updated.model_copy(update={"agent_name": "renamed"}))
        assert (await store.get_agent("a1")).agent_name == "renamed"
        await store.record_state(record("a1", "idle", 1), history_limit=10)
        assert (await store.delete_agent("a1")).agent_id == "a1"
        assert await store.get_agent("a1") is None and await store.delete_agent("a1") is None
        assert (await store.state_history("a1", offset=0, limit=10)).total == 0


class TestState:
    async def test_record_state_updates_current_and_history_newest_first(
        self, store: Storage
    ) -> None:
        await store.create_agent(agent("a1"))
        for i, state in enumerate(["initializing", "idle", "active"]):
            updated, duplicate = await store.record_state(record("a1", state, i), history_limit=10)
            assert not duplicate and updated.state == state
        history = await store.state_history("a1", offset=0, limit=10)
        assert [r.state for r in history.items] == ["active", "idle", "initializing"]
        page = await store.state_history("a1", offset=1, limit=1)
        assert page.total == 3 and page.items[0].state == "idle"

    async def test_history_is_bounded(self, store: Storage) -> None:
        await store.create_agent(agent("a1"))
        for i in range(12):
            await store.record_state(
                record("a1", "idle" if i % 2 else "active", i), history_limit=5
            )
        history = await store.state_history("a1", offset=0, limit=100)
        assert history.total == 5
        assert history.items[0].timestamp > history.items[-1].timestamp

    async def test_a_history_holds_at_most_a_quarter_more_than_its_limit(
        self, store: Storage
    ) -> None:
        """A store may trim a history in steps (``history_trims.py``, Redis's span): between
        two, it holds at most a quarter more than it keeps, newest first, and never fewer
        than it keeps. ``AgentStates.state_history`` shows the newest ``history_limit``."""
        await store.create_agent(agent("a1"))
        for i in range(40):
            await store.record_state(record("a1", "idle", i), history_limit=8)
            history = await store.state_history("a1", offset=0, limit=100)
            assert min(i + 1, 8) <= history.total <= 10, (i, history.total)
            assert history.items[0].timestamp == record("a1", "idle", i).timestamp

    async def test_out_of_order_unknown_and_duplicate(self, store: Storage) -> None:
        await store.create_agent(agent("a1"))
        first = record("a1", "active", 10, k=1)
        await store.record_state(first, history_limit=10)
        with pytest.raises(ConflictError):
            await store.record_state(record("a1", "idle", 5), history_limit=10)
        with pytest.raises(NotFoundError):
            await store.record_state(record("ghost", "idle", 1), history_limit=10)
        _, duplicate = await store.record_state(first, history_limit=10)
        assert duplicate
        assert (await store.state_history("a1", offset=0, limit=10)).total == 1

    async def test_an_agent_is_known_to_name_its_tasks_from_its_first_report_that_does(
        self, store: Storage
    ) -> None:
        await store.create_agent(agent("a1", active_tasks=["t1"]))
        await store.save_tasks([task("t1", status=TaskStatus.DISPATCHED, agent_id="a1")])
        updated, _ = await store.record_state(record("a1", "idle", 1), history_limit=10)
        assert not updated.names_tasks
        ours = record("a1", "error", 2, opscore_task_id="t1").model_copy(
            update={"reason": "probe"}
        )  # Ops-Core's own record says nothing of the agent's reports
        assert not (await store.record_state(ours, history_limit=10))[0].names_tasks
        start = MoveOnReport(TaskStatus.RUNNING, ["dispatched"])
        named = record("a1", "active", 3, opscore_task_id="t1")
        written = await store.record_report(named, history_limit=10, plan=start)
        assert written.agent.names_tasks and written.task is not None
        unnamed, _ = await store.record_state(record("a1", "idle", 4), history_limit=10)
        assert unnamed.names_tasks and (await store.get_agent("a1")).names_tasks

    async def test_a_fleet_larger_than_one_script_call_can_unpack(self, store: Storage) -> None:
        # Redis's Lua unpack() stops at 8,000 values: a fleet past that is read in chunks
        fleet = 8_100
        for first in range(0, fleet, 300):
            await asyncio.gather(
                *(
                    store.save_agent(agent(f"f{i:05d}", state="idle"))
                    for i in range(first, min(first + 300, fleet))
                )
            )
        assert len(await store.available_agents({"idle"})) == fleet
        assert (
            await store.list_agents(state="idle", capability=None, offset=0, limit=1)
        ).total == (fleet)

    async def test_a_fleet_larger_than_the_parsed_records_is_not_parsed_at_each_read(
        self, store: Storage, monkeypatch
    ) -> None:
        """The dispatcher reads the available agents at each pass: past the shared cache of
        parsed records (8,192, tasks included) each read parsed every agent again (170 ms
        for 10,000 on Redis). Only an agent that changed is parsed again (storage/fleet.py)."""
        monkeypatch.setattr(PARSED, "size", 50)  # a fleet six times the cache
        for first in range(0, 300, 100):
            await asyncio.gather(
                *(
                    store.save_agent(agent(f"f{i:03d}", state="idle"))
                    for i in range(first, first + 100)
                )
            )
        await store.available_agents({"idle"})
        parses = 0
        load = PARSED.load

        def counted(model, raw):
            nonlocal parses
            parses += 1
            return load(model, raw)

        monkeypatch.setattr(PARSED, "load", counted)
        assert len(await store.available_agents({"idle"})) == 300
        assert parses == 0
        await store.record_state(record("f007", "busy", 1), history_limit=5)
        await store.delete_agent("f008")
        parses = 0
        found = {a.agent_id: a for a in await store.available_agents({"idle", "busy"})}
        assert len(found) == 299 and "f008" not in found and found["f007"].state == "busy"
        assert parses <= 1  # the agent that changed, and only it

    async def test_available_and_stale_agents(self, store: Storage) -> None:
        await store.create_agent(agent("busy", max_concurrency=1, active_tasks=["t0"]))
        await store.create_agent(agent("free"))
        await store.create_agent(agent("err"))
        for agent_id, state in (("busy", "idle"), ("free", "idle"), ("err", "error")):
            await store.record_state(record(agent_id, state, 1), history_limit=10)
        assert [a.agent_id for a in await store.available_agents({"idle"})] == ["free"]
        stale = await store.stale_agents(
            seen_before=utcnow() + timedelta(seconds=1), exclude_state="error"
        )
        assert sorted(a.agent_id for a in stale) == ["busy", "free"]
        assert (
            await store.stale_agents(seen_before=utcnow() - timedelta(hours=1), exclude_state="x")
            == []
        )

    async def test_stale_agents_without_an_excluded_state_include_never_reported_ones(
        self, store: Storage
    ) -> None:
        await store.create_agent(agent("silent"))
        await store.create_agent(agent("off"))
        await store.record_state(record("off", "offline", 1), history_limit=10)
        later = utcnow() + timedelta(seconds=1)
        everyone = await store.stale_agents(seen_before=later)
        assert sorted(a.agent_id for a in everyone) == ["off", "silent"]
        online = await store.stale_agents(seen_before=later, exclude_state="offline")
        assert [a.agent_id for a in online] == ["silent"]

    async def test_a_held_report_waits_for_its_agent_and_is_taken_once(
        self, store: Storage
    ) -> None:
        early = record("early", "idle", 1)
        assert await store.hold_report(early, max_agents=10)
        assert await store.hold_report(record("early", "initializing", 0), max_agents=10)
        taken = await asyncio.gather(*(store.take_held_report("early") for _ in range(5)))
        got = [r for r in taken if r is not None]
        assert len(got) == 1 and got[0].state == "idle"  # the newest report was kept
        assert await store.take_held_report("early") is None

    async def test_held_reports_are_bounded_by_agents_and_dropped_by_age(
        self, store: Storage
    ) -> None:
        assert await store.hold_report(record("one", "idle", 1), max_agents=2)
        assert await store.hold_report(record("two", "idle", 1), max_agents=2)
        assert not await store.hold_report(record("three", "idle", 1), max_agents=2)
        assert await store.hold_report(record("two", "active", 2), max_agents=2)  # same agent
        assert await store.drop_held_reports(received_before=utcnow() - timedelta(hours=1)) == []
        dropped = await store.drop_held_reports(received_before=utcnow() + timedelta(seconds=1))
        assert sorted((r.agent_id, r.state) for r in dropped) == [
            ("one", "idle"),
            ("two", "active"),
        ]
        assert await store.take_held_report("one") is None
        assert await store.hold_report(record("three", "idle", 1), max_agents=2)

    async def test_concurrent_writers_keep_exact_counts(self, store: Storage) -> None:
        await store.create_agent(agent("a1", max_concurrency=5))
        claims = await asyncio.gather(*(store.claim_agent_slot("a1", f"t{i}") for i in range(40)))
        assert sum(claims) == 5
        assert len((await store.get_agent("a1")).active_tasks) == 5
        await asyncio.gather(*(store.release_agent_slot("a1", f"t{i}") for i in range(40)))
        assert (await store.get_agent("a1")).active_tasks == []
        await store.create_agent(agent("a2"))
        reports = [record("a2", "idle" if i % 2 else "active", i, i=i) for i in range(30)]
        results = await asyncio.gather(
            *(store.record_state(r, history_limit=100) for r in reports), return_exceptions=True
        )
        accepted = [r for r in results if not isinstance(r, BaseException)]
        assert all(isinstance(r, ConflictError) for r in results if isinstance(r, BaseException))
        assert (await store.state_history("a2", offset=0, limit=100)).total == len(accepted)


class TestRetention:
    async def _finished(self, store: Storage, sid: str, *, status: str, ago: float) -> None:
        now = utcnow()
        await store.save_session(Session(session_id=sid, created_at=now, updated_at=now))
        await store.save_tasks([task(f"{sid}-t", session_id=sid)])
        if status != "running":
            await store.update_session(
                sid,
                {"status": SessionStatus(status), "finished_at": now - timedelta(seconds=ago)},
                expect=["running"],
            )
        await store.add_dead_letter(
            DeadLetter(
                task_id=f"{sid}-t", session_id=sid, step_id="t", attempts=1, dead_lettered_at=now
            )
        )

    async def test_prune_removes_old_and_surplus_finished_runs_with_their_tasks_and_letters(
        self, store: Storage
    ) -> None:
        await self._finished(store, "old", status="completed", ago=3600)
        await self._finished(store, "failed-old", status="failed", ago=3600)
        await self._finished(store, "mid", status="cancelled", ago=10)
        await self._finished(store, "new", status="completed", ago=1)
        await self._finished(store, "live", status="running", ago=0)
        cutoff = utcnow() - timedelta(seconds=60)
        removed = await store.prune_finished(finished_before=cutoff, keep=100)
        assert removed == 2
        assert await store.get_session("old") is None and await store.get_task("old-t") is None
        assert await store.get_session("failed-old") is None
        letters = await store.list_dead_letters(offset=0, limit=10)
        assert sorted(d.task_id for d in letters.items) == ["live-t", "mid-t", "new-t"]
        # by count: keep the newest finished one; running sessions are never touched
        assert await store.prune_finished(finished_before=None, keep=1) == 1
        assert await store.get_session("mid") is None and await store.get_session("new")
        assert (await store.get_session("live")).status == "running"
        assert await store.get_task("live-t") is not None
        assert await store.prune_finished(finished_before=cutoff, keep=1) == 0

    async def test_prune_by_age_reads_each_runs_own_end_not_its_payloads(
        self, store: Storage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Redis reads the runs a chunk at a time and each one's end from its text
        monkeypatch.setattr("opscore.storage.redis.sessions._CHUNK", 2)
        now = utcnow()
        long_ago = (now - timedelta(days=30)).isoformat()
        for i, ago in enumerate([3600, 1, 3600, 1, 3600]):
            lookalike = {"finished_at": long_ago if ago == 1 else None}
            await store.save_session(
                session(f"a{i}", initial_payload=lookalike, metadata={"nested": lookalike})
            )
            await store.update_session(
                f"a{i}",
                {"status": SessionStatus.COMPLETED, "finished_at": now - timedelta(seconds=ago)},
            )
        cutoff = now - timedelta(seconds=60)
        assert await store.prune_finished(finished_before=cutoff, keep=100, batch=2) == 2
        assert await store.prune_finished(finished_before=cutoff, keep=100, batch=2) == 1
        assert await store.prune_finished(finished_before=cutoff, keep=100, batch=2) == 0
        page = await store.list_sessions(
            status=None, workflow_id=None, agent_id=None, offset=0, limit=10
        )
        assert sorted(s.session_id for s in page.items) == ["a1", "a3"]

    async def test_prune_works_in_batches(self, store: Storage) -> None:
        for i in range(7):
            await self._finished(store, f"s{i}", status="completed", ago=100)
        cutoff = utcnow()
        assert await store.prune_finished(finished_before=cutoff, keep=0, batch=3) == 3
        assert await store.prune_finished(finished_before=cutoff, keep=0, batch=3) == 3
        assert await store.prune_finished(finished_before=cutoff, keep=0, batch=3) == 1
        page = await store.list_sessions(
            status=None, workflow_id=None, agent_id=None, offset=0, limit=10
        )
        assert page.total == 0


class TestWorkflows:
    async def test_versions_latest_list_and_delete(self, store: Storage) -> None:
        def tpl(version: str, wid: str = "w", step: str = "a") -> WorkflowTemplate:
            return WorkflowTemplate(
                id=wid, version=version, tasks=[{"taskId": step}], created_at=utcnow()
            )

        assert await store.save_workflow(tpl("1")) is None
        assert (await store.save_workflow(tpl("1"))).version == "1"
        await store.save_workflow(tpl("2"))
        await store.save_workflow(tpl("1", "another"))
        assert (await store.get_workflow("w", None)).version == "2"
        assert (await store.get_workflow("w", "1")).version == "1"
        assert await store.workflow_versions("w") == ["1", "2"]
        listing = await store.list_workflows(offset=0, limit=10)
        assert [(t.id, t.version) for t in listing.items] == [("another", "1"), ("w", "2")]
        assert await store.delete_workflow("w", "2") == 1
        assert (await store.get_workflow("w", None)).version == "1"
        # a version deleted and saved again with other steps is read as it is now
        assert await store.delete_workflow("w", "1") == 1
        assert await store.save_workflow(tpl("1", step="b")) is None
        newest = await store.get_workflow("w", None)
        assert newest.version == "1" and [t.task_id for t in newest.tasks] == ["b"]
        assert await store.delete_workflow("w", None) == 1
        assert (
            await store.get_workflow("w", None) is None
            and await store.delete_workflow("w", None) == 0
        )


class TestSessionsAndTasks:
    async def test_a_run_is_written_with_its_tasks_in_one_step(self, store: Storage) -> None:
        steps = [task(f"r1-{i}", session_id="r1", step_id=f"s{i}") for i in range(3)]
        steps[0] = steps[0].model_copy(update={"status": TaskStatus.QUEUED})
        await store.save_run(session("r1"), steps)
        found, tasks = await store.session_with_tasks("r1")
        assert found is not None and found.status == SessionStatus.RUNNING
        assert [t.task_id for t in tasks] == ["r1-0", "r1-1", "r1-2"]  # in the given order
        assert tasks[0].status == TaskStatus.QUEUED
        running = await store.list_sessions(
            status="running", workflow_id=None, agent_id=None, offset=0, limit=10
        )
        assert [s.session_id for s in running.items] == ["r1"]
        # written again (a retried request): replaced, each task still once, in its place
        again = [t.model_copy(update={"priority": 7}) for t in steps]
        await store.save_run(session("r1", status=SessionStatus.QUEUED), again)
        found, tasks = await store.session_with_tasks("r1")
        assert found.status == SessionStatus.QUEUED
        assert [t.task_id for t in tasks] == ["r1-0", "r1-1", "r1-2"]
        assert {t.priority for t in tasks} == {7}
        queued = await store.list_sessions(
            status="queued", workflow_id=None, agent_id=None, offset=0, limit=10
        )
        assert [s.session_id for s in queued.items] == ["r1"]
        running = await store.list_sessions(
            status="running", workflow_id=None, agent_id=None, offset=0, limit=10
        )
        assert running.items == []
        # a task in flight is found by inflight_tasks, as with save_tasks
        moving = tasks[0].model_copy(update={"status": TaskStatus.DISPATCHED})
        await store.save_run(session("r1"), [moving])
        assert [t.task_id for t in await store.inflight_tasks()] == ["r1-0"]
        assert len((await store.session_with_tasks("r1"))[1]) == 3
        # one task written before and one new: the new one joins the list, after the others
        await store.save_run(session("r1"), [tasks[1], task("r1-3", session_id="r1")])
        found, tasks = await store.session_with_tasks("r1")
        assert [t.task_id for t in tasks] == ["r1-0", "r1-1", "r1-2", "r1-3"]
        assert [t.task_id for t in await store.inflight_tasks()] == ["r1-0"]

    async def test_a_run_is_written_with_its_first_steps_queued(self, store: Storage) -> None:
        now = utcnow()
        later = now + timedelta(seconds=30)
        steps = [
            task("q-now", session_id="q", status=TaskStatus.QUEUED, ready_at=now, priority=5),
            task("q-later", session_id="q", status=TaskStatus.QUEUED, ready_at=later),
            task("q-pending", session_id="q"),
        ]
        await store.save_run(session("q"), steps, queued=["q-now", "q-later"])
        entries = await store.dequeue_ready(now + timedelta(seconds=1), 10)
        assert [(e.task_id, e.priority) for e in entries] == [("q-now", 5)]
        await store.ack(["q-now"])
        # the delayed one waits for its time, and sets the dispatcher's alarm
        alarm = await store.next_ready_at(now + timedelta(seconds=1))
        assert alarm is not None and abs(alarm - later) < timedelta(milliseconds=1)
        assert await store.dequeue_ready(now + timedelta(seconds=1), 10) == []
        later_entries = await store.dequeue_ready(later + timedelta(seconds=1), 10)
        assert [e.task_id for e in later_entries] == ["q-later"]
        found, tasks = await store.session_with_tasks("q")
        assert found is not None and [t.task_id for t in tasks] == ["q-now", "q-later", "q-pending"]

    async def test_sessions_list_newest_first_with_filters_and_cas(self, store: Storage) -> None:
        for i in range(4):
            await store.save_session(
                session(
                    f"s{i}", workflow_id="w" if i < 3 else "x", agent_id="a" if i == 1 else None
                )
            )
        page = await store.list_sessions(
            status=None, workflow_id=None, agent_id=None, offset=0, limit=2
        )
        assert page.total == 4 and [s.session_id for s in page.items] == ["s3", "s2"]
        only_w = await store.list_sessions(
            status=None, workflow_id="w", agent_id=None, offset=0, limit=10
        )
        assert [s.session_id for s in only_w.items] == ["s2", "s1", "s0"]
        pinned = await store.list_sessions(
            status=None, workflow_id=None, agent_id="a", offset=0, limit=10
        )
        assert [s.session_id for s in pinned.items] == ["s1"]
        done = await store.update_session(
            "s0", {"status": SessionStatus.COMPLETED}, expect=["running"]
        )
        assert done.status == SessionStatus.COMPLETED
        assert (
            await store.update_session("s0", {"status": SessionStatus.FAILED}, expect=["running"])
            is None
        )
        completed = await store.list_sessions(
            status="completed", workflow_id=None, agent_id=None, offset=0, limit=10
        )
        running = await store.list_sessions(
            status="running", workflow_id=None, agent_id=None, offset=0, limit=10
        )
        assert [s.session_id for s in completed.items] == ["s0"] and running.total == 3

    async def test_filters_match_the_sessions_own_ids_not_its_payloads_or_name(
        self, store: Storage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Redis reads a filtered list a chunk of documents at a time and matches their text:
        # chunks of 3 put the page across several of them
        monkeypatch.setattr("opscore.storage.redis.sessions._CHUNK", 3)
        lookalike = {"workflow_id": "w", "agent_id": "a", "nested": {"workflow_id": "w"}}
        runs = [
            ("a1", {"workflow_id": "w", "agent_id": "a", "name": 'say "workflow_id":"x"'}),
            ("a2", {"workflow_id": "x", "initial_payload": lookalike, "metadata": lookalike}),
            ("a3", {"workflow_id": "w"}),
            ("a4", {"workflow_id": "w-2", "agent_id": "a-2"}),
            ("a5", {"workflow_id": "w", "agent_id": "a", "status": SessionStatus.COMPLETED}),
            ("a6", {"workflow_id": "ünï", "name": "\\"}),
            ("a7", {"workflow_id": "w", "initial_payload": {"agent_id": "a"}}),
        ]
        for session_id, fields in runs:
            await store.save_session(session(session_id, **fields))

        async def ids(
            offset: int = 0, limit: int = 10, status: str | None = None, **filters: str
        ) -> tuple[list[str], int]:
            page = await store.list_sessions(
                status=status,
                workflow_id=filters.get("workflow_id"),
                agent_id=filters.get("agent_id"),
                offset=offset,
                limit=limit,
            )
            return [s.session_id for s in page.items], page.total

        assert await ids(workflow_id="w") == (["a7", "a5", "a3", "a1"], 4)
        assert await ids(offset=1, limit=2, workflow_id="w") == (["a5", "a3"], 4)
        assert await ids(offset=4, workflow_id="w") == ([], 4)
        assert await ids(workflow_id="x") == (["a2"], 1)
        assert await ids(agent_id="a") == (["a5", "a1"], 2)
        assert await ids(workflow_id="w", agent_id="a") == (["a5", "a1"], 2)
        assert await ids(status="completed", workflow_id="w") == (["a5"], 1)
        assert await ids(status="running", workflow_id="w") == (["a7", "a3", "a1"], 3)
        assert await ids(workflow_id="ünï") == (["a6"], 1)
        # a value JSON would escape cannot be looked up in the text: read the hard way
        assert await ids(workflow_id='w"') == ([], 0)
        assert await ids(agent_id="nobody") == ([], 0)

    async def test_oldest_session_of_a_status_and_workflow(
        self, store: Storage, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr("opscore.storage.redis.sessions._CHUNK", 2)
        queued = {"status": SessionStatus.QUEUED}
        await store.save_session(session("o1", workflow_id="other", **queued))
        await store.save_session(session("o2", workflow_id="other", **queued))
        await store.save_session(session("o3", workflow_id="w", **queued))
        await store.save_session(session("o4", workflow_id="w", **queued))
        await store.save_session(session("o5", workflow_id="w"))  # running

        async def oldest(status: str, workflow_id: str) -> str | None:
            found = await store.oldest_session(status=status, workflow_id=workflow_id)
            return found.session_id if found else None

        assert await oldest("queued", "w") == "o3"  # past a whole chunk of another workflow's
        assert await oldest("queued", "other") == "o1"
        assert await oldest("running", "w") == "o5"
        assert await oldest("queued", "nothing") is None
        assert await oldest("completed", "w") is None
        await store.update_session("o3", {"status": SessionStatus.RUNNING})
        assert await oldest("queued", "w") == "o4"
        assert await oldest("running", "w") == "o3"  # a run keeps its place when it moves
        await store.save_session(session("o6", workflow_id='w"', **queued))
        assert await oldest("queued", 'w"') == "o6"

    async def test_status_totals_follow_every_change_and_pages_start_newest(
        self, store: Storage
    ) -> None:
        for i in range(5):
            await store.save_session(session(f"p{i}"))
        for i in (4, 0, 2):  # finishing order differs from creation order
            await store.update_session(f"p{i}", {"status": SessionStatus.COMPLETED})
        await store.save_session(session("p1").model_copy(update={"status": SessionStatus.FAILED}))

        async def listing(status: str | None, offset: int = 0, limit: int = 10) -> Page[Session]:
            return await store.list_sessions(
                status=status, workflow_id=None, agent_id=None, offset=offset, limit=limit
            )

        second_completed = await listing("completed", offset=1, limit=1)
        assert second_completed.total == 3
        assert [s.session_id for s in second_completed.items] == ["p2"]
        completed = await listing("completed")
        assert [s.session_id for s in completed.items] == ["p4", "p2", "p0"]  # newest created
        assert [s.session_id for s in (await listing("failed")).items] == ["p1"]
        assert (await listing("running")).total == 1 and (await listing(None)).total == 5
        assert (await listing("cancelled")).total == 0

    async def test_task_cas_on_status_and_attempt_and_inflight_index(self, store: Storage) -> None:
        await store.save_tasks([task("t1"), task("t2"), task("t3", session_id="other")])
        assert [t.task_id for t in await store.session_tasks("s1")] == ["t1", "t2"]
        moved = await store.update_task(
            "t1", {"status": TaskStatus.DISPATCHED, "attempts": 1}, expect=["pending"]
        )
        assert moved.status == TaskStatus.DISPATCHED
        assert (
            await store.update_task("t1", {"status": TaskStatus.QUEUED}, expect=["pending"]) is None
        )
        assert await store.update_task("t1", {"status": TaskStatus.RUNNING}, attempt=2) is None
        assert [t.task_id for t in await store.inflight_tasks()] == ["t1"]
        await store.update_task("t1", {"status": TaskStatus.COMPLETED}, attempt=1)
        assert await store.inflight_tasks() == []
        assert await store.update_task("missing", {"status": TaskStatus.QUEUED}) is None

    async def test_the_inflight_index_follows_a_task_through_retries(self, store: Storage) -> None:
        await store.save_tasks([task("t1"), task("t2", status=TaskStatus.RUNNING, attempts=1)])

        async def inflight() -> list[str]:
            return sorted(t.task_id for t in await store.inflight_tasks())

        assert await inflight() == ["t2"]  # saved in flight
        steps: list[tuple[dict, bool]] = [
            ({"status": TaskStatus.QUEUED}, False),
            ({"status": TaskStatus.DISPATCHED, "attempts": 1}, True),
            ({"awaiting_answer": False}, True),  # a change that stays in flight
            ({"status": TaskStatus.RUNNING}, True),
            ({"status": TaskStatus.QUEUED}, False),  # a retry: out, then in again
            ({"status": TaskStatus.DISPATCHED, "attempts": 2}, True),
            ({"status": TaskStatus.FAILED}, False),
        ]
        for changes, expected in steps:
            assert await store.update_task("t1", changes) is not None
            assert await inflight() == (["t1", "t2"] if expected else ["t2"]), changes
        await store.save_tasks([task("t2", status=TaskStatus.COMPLETED, attempts=1)])
        assert await inflight() == []  # saved again, out of flight

    async def test_a_session_and_its_tasks_are_read_together(self, store: Storage) -> None:
        assert await store.session_with_tasks("s1") == (None, [])
        await store.save_tasks([task("t2"), task("t1"), task("t3", session_id="other")])
        assert await store.session_with_tasks("s1") == (None, await store.session_tasks("s1"))
        await store.save_session(session("s1"))
        await store.update_task("t1", {"status": TaskStatus.QUEUED})
        found, tasks = await store.session_with_tasks("s1")
        assert found is not None and found.session_id == "s1"
        assert [t.task_id for t in tasks] == ["t2", "t1"]  # in creation order
        assert tasks[1].status == TaskStatus.QUEUED

    async def test_a_claim_may_bring_the_task_it_claims(self, store: Storage) -> None:
        now = utcnow()
        await store.save_tasks([task("t1", status=TaskStatus.QUEUED)])
        await store.enqueue("t1", priority=0, ready_at=now)
        await store.enqueue("gone", priority=0, ready_at=now)
        entries = await store.dequeue_ready(now, 10)
        assert [e.task_id for e in entries] == ["t1", "gone"]
        for entry in entries:  # a store that reads the record must read the current one
            if entry.read:
                current = await store.get_task(entry.task_id)
                assert entry.task == current

    async def test_a_task_read_after_a_state_report_sees_every_write_since(
        self, store: Storage
    ) -> None:
        await store.create_agent(agent("a1", active_tasks=["t1"]))
        await store.save_tasks([task("t1", status=TaskStatus.RUNNING)])
        await store.record_state(record("a1", "active", 1), history_limit=10)
        await store.update_task("t1", {"status": TaskStatus.COMPLETED})
        assert (await store.get_task("t1")).status == TaskStatus.COMPLETED
        await store.record_state(record("a1", "idle", 2), history_limit=10)
        assert (await store.get_task("t1")).status == TaskStatus.COMPLETED
        assert (await store.get_task("t1")).status == TaskStatus.COMPLETED

    async def test_a_move_can_queue_the_task_in_the_same_step(self, store: Storage) -> None:
        now = utcnow()
        await store.save_tasks([task("t1"), task("t2")])
        moved = await store.update_task(
            "t1", {"status": TaskStatus.QUEUED, "priority": 3}, expect=["pending"], enqueue_at=now
        )
        assert moved is not None and moved.status == TaskStatus.QUEUED
        refused = await store.update_task(
            "t2", {"status": TaskStatus.QUEUED}, expect=["running"], enqueue_at=now
        )
        assert refused is None  # the move did not happen: nothing was queued either
        assert [(e.task_id, e.priority) for e in await store.dequeue_ready(now, 10)] == [("t1", 3)]
        await store.ack(["t1"])
        later = now + timedelta(seconds=30)
        await store.update_task("t2", {"status": TaskStatus.QUEUED}, enqueue_at=later)
        assert await store.dequeue_ready(now, 10) == []
        assert abs((await store.next_ready_at(now) - later).total_seconds()) < 0.01
        assert [e.task_id for e in await store.dequeue_ready(later, 10)] == ["t2"]

    async def test_an_attempt_that_ends_gives_up_its_agent_slot_in_the_same_step(
        self, store: Storage
    ) -> None:
        await store.create_agent(agent("a1", max_concurrency=2, active_tasks=["t1", "t2"]))
        await store.save_tasks([task("t1", status=TaskStatus.RUNNING, agent_id="a1")])
        refused = await store.update_task(
            "t1", {"status": TaskStatus.COMPLETED}, expect=["queued"], release_slot_of="a1"
        )
        assert refused is None  # the move did not happen: the slot stays taken
        assert (await store.get_agent("a1")).active_tasks == ["t1", "t2"]
        done = await store.update_task(
            "t1", {"status": TaskStatus.COMPLETED}, expect=["running"], release_slot_of="a1"
        )
        assert done is not None and done.status == TaskStatus.COMPLETED
        assert (await store.get_agent("a1")).active_tasks == ["t2"]  # only its own slot
        assert await store.claim_agent_slot("a1", "t3")
        # an agent that no longer holds the task, or is gone, does not stop the move
        await store.save_tasks([task("t4", status=TaskStatus.RUNNING)])
        for holder in ("a1", "gone"):
            moved = await store.update_task(
                "t4", {"status": TaskStatus.RUNNING}, release_slot_of=holder
            )
            assert moved is not None
        assert (await store.get_agent("a1")).active_tasks == ["t2", "t3"]
        assert await store.get_agent("gone") is None

    async def test_an_attempt_that_starts_takes_an_agent_slot_in_the_same_step(
        self, store: Storage
    ) -> None:
        await store.create_agent(agent("a1", max_concurrency=1))
        await store.save_tasks([task(f"t{i}", status=TaskStatus.QUEUED) for i in range(3)])
        refused = await store.update_task(
            "t0", {"status": TaskStatus.DISPATCHED}, expect=["running"], claim_slot_of="a1"
        )
        assert refused is None  # the move did not happen: no slot taken
        assert (await store.get_agent("a1")).active_tasks == []
        started = await store.update_task(
            "t0", {"status": TaskStatus.DISPATCHED}, expect=["queued"], claim_slot_of="a1"
        )
        assert started is not None and started.status == TaskStatus.DISPATCHED
        assert (await store.get_agent("a1")).active_tasks == ["t0"]
        with pytest.raises(NoFreeSlotError):  # full: nothing written
            await store.update_task(
                "t1", {"status": TaskStatus.DISPATCHED}, expect=["queued"], claim_slot_of="a1"
            )
        assert (await store.get_task("t1")).status == TaskStatus.QUEUED
        with pytest.raises(NoFreeSlotError):  # an agent that is gone takes nothing
            await store.update_task("t1", {"status": TaskStatus.DISPATCHED}, claim_slot_of="x")
        assert (await store.get_task("t1")).status == TaskStatus.QUEUED
        # the task it holds keeps its slot
        again = await store.update_task("t0", {"attempts": 2}, claim_slot_of="a1")
        assert again is not None and (await store.get_agent("a1")).active_tasks == ["t0"]
        await store.create_agent(agent("a2", max_concurrency=1))
        results = await asyncio.gather(  # concurrent starts on one free slot: one winner
            *(
                store.update_task(
                    f"t{i}",
                    {"status": TaskStatus.DISPATCHED},
                    expect=["queued"],
                    claim_slot_of="a2",
                )
                for i in (1, 2)
            ),
            return_exceptions=True,
        )
        won = [r.task_id for r in results if isinstance(r, TaskRun)]
        assert len(won) == 1 and sum(isinstance(r, NoFreeSlotError) for r in results) == 1
        assert (await store.get_agent("a2")).active_tasks == won

    async def test_concurrent_task_cas_has_one_winner(self, store: Storage) -> None:
        await store.save_tasks([task("t1", status=TaskStatus.RUNNING)])
        results = await asyncio.gather(
            *(
                store.update_task(
                    "t1", {"status": TaskStatus.COMPLETED, "result": i}, expect=["running"]
                )
                for i in range(20)
            )
        )
        assert sum(r is not None for r in results) == 1


class MoveOnReport:
    """A ReportPlan for the tests: the agent's only task moves to ``to`` from ``expect``
    (freeing the agent's slot with ``release``), once the report is written."""

    def __init__(
        self,
        to: TaskStatus,
        expect: list[str],
        *,
        release: bool = False,
        then: QueuedNext | None = None,
        ends: RunEnd | None = None,
    ) -> None:
        self.to, self.expect, self.release, self.then = to, expect, release, then
        self.ends = ends
        self.skip = False  # plan nothing

    def task_of(self, agent: Agent, record: StateRecord) -> str | None:
        named = self.named_task(record)
        if named is not None:
            return named if named in agent.active_tasks else None
        return agent.active_tasks[0] if len(agent.active_tasks) == 1 else None

    def named_task(self, record: StateRecord) -> str | None:
        named = record.details.get("opscore_task_id")
        return named if isinstance(named, str) else None

    def next_step_of(self, task_id: str) -> str | None:
        return self.then.task_id if self.then is not None else None

    def run_ended_by(self, task_id: str) -> str | None:
        return self.ends.session_id if self.ends is not None else None

    def plan(self, agent: Agent, record: StateRecord, task: TaskRun) -> TaskUpdate | None:
        if self.skip:
            return None
        return TaskUpdate(
            {"status": self.to, "result": record.state},
            expect=self.expect,
            attempt=task.attempts,
            release_slot_of=agent.agent_id if self.release else None,
            meaning=self.to.value,
            then=self.then,
            ends_run=self.ends,
        )


class TestReportAndTask:
    """A state report and the change it makes to its agent's task, in one write."""

    async def test_a_report_moves_its_agents_task_in_the_same_write(self, store: Storage) -> None:
        await store.create_agent(agent("a1", max_concurrency=2, active_tasks=["t1"]))
        await store.save_tasks([task("t1", status=TaskStatus.DISPATCHED, agent_id="a1")])
        start = MoveOnReport(TaskStatus.RUNNING, ["dispatched"])
        written = await store.record_report(record("a1", "active", 1), history_limit=5, plan=start)
        assert not written.duplicate and written.agent.state == "active"
        assert written.task is not None and written.task.status == TaskStatus.RUNNING
        assert written.update is not None and written.update.meaning == "running"
        assert written.agent.active_tasks == ["t1"]  # no release asked: the slot stays
        assert (await store.get_task("t1")).status == TaskStatus.RUNNING
        assert (await store.get_agent("a1")).state == "active"

        end = MoveOnReport(TaskStatus.COMPLETED, ["running"], release=True)
        written = await store.record_report(record("a1", "idle", 2), history_limit=5, plan=end)
        assert written.task is not None and written.task.status == TaskStatus.COMPLETED
        assert written.task.result == "idle"
        assert written.agent.active_tasks == [] and written.agent.state == "idle"
        stored = await store.get_agent("a1")
        assert stored.active_tasks == [] and stored.state == "idle"
        assert (await store.get_task("t1")).status == TaskStatus.COMPLETED
        assert [t.task_id for t in await store.inflight_tasks()] == []
        history = await store.state_history("a1", offset=0, limit=10)
        assert [r.state for r in history.items] == ["idle", "active"]

    async def test_a_change_that_does_not_apply_leaves_the_task_and_writes_the_report(
        self, store: Storage
    ) -> None:
        await store.create_agent(agent("a1", active_tasks=["t1"]))
        await store.save_tasks([task("t1", status=TaskStatus.RUNNING, agent_id="a1")])
        refused = MoveOnReport(TaskStatus.RUNNING, ["dispatched"], release=True)
        written = await store.record_report(record("a1", "busy", 1), history_limit=5, plan=refused)
        assert written.task is None and written.update is None and not written.duplicate
        assert (await store.get_task("t1")).status == TaskStatus.RUNNING
        found = await store.get_agent("a1")
        assert found.state == "busy" and found.active_tasks == ["t1"]  # no slot freed
        refused.skip = True
        written = await store.record_report(record("a1", "idle", 2), history_limit=5, plan=refused)
        assert written.task is None and (await store.get_agent("a1")).state == "idle"
        # an agent with two tasks, or none: the report alone
        await store.create_agent(agent("a2", max_concurrency=2, active_tasks=["t1", "t2"]))
        both = MoveOnReport(TaskStatus.COMPLETED, ["running"], release=True)
        written = await store.record_report(record("a2", "idle", 1), history_limit=5, plan=both)
        assert written.task is None and written.agent.active_tasks == ["t1", "t2"]
        assert (await store.get_task("t1")).status == TaskStatus.RUNNING
        await store.create_agent(agent("a3"))
        written = await store.record_report(record("a3", "idle", 1), history_limit=5, plan=both)
        assert written.task is None and written.agent.state == "idle"

    async def test_replays_stale_and_unknown_reports_change_nothing(self, store: Storage) -> None:
        await store.create_agent(agent("a1", active_tasks=["t1"]))
        await store.save_tasks([task("t1", status=TaskStatus.DISPATCHED, agent_id="a1")])
        start = MoveOnReport(TaskStatus.RUNNING, ["dispatched"])
        first = record("a1", "active", 5)
        await store.record_report(first, history_limit=5, plan=start)
        await store.update_task("t1", {"status": TaskStatus.DISPATCHED})  # as if not started
        replay = await store.record_report(first, history_limit=5, plan=start)
        assert replay.duplicate and replay.task is None
        with pytest.raises(ConflictError):
            await store.record_report(record("a1", "active", 1), history_limit=5, plan=start)
        with pytest.raises(NotFoundError):
            await store.record_report(record("nobody", "idle", 1), history_limit=5, plan=start)
        assert (await store.get_task("t1")).status == TaskStatus.DISPATCHED
        assert len((await store.state_history("a1", offset=0, limit=10)).items) == 1


class TestSweepIndex:
    """A round of sweeps reads the tasks in flight that are due (``inflight_tasks(due_by)``,
    ``models/sweep_due.py``), not every one; the full read still lists them all."""

    async def due(self, store: Storage, seconds: float) -> list[str]:
        found = await store.inflight_tasks(due_by=NOW + timedelta(seconds=seconds))
        return sorted(t.task_id for t in found)

    async def test_each_task_is_due_at_its_earliest_sweep(self, store: Storage) -> None:
        at = timedelta
        ref = A2ATaskRef(task_id="r1", checked_at=NOW, next_check_at=NOW + at(seconds=5))
        await store.save_tasks(
            [
                task("push", status=TaskStatus.RUNNING, deadline=NOW + at(seconds=10)),
                task(  # a pull worker's lease runs out before its deadline
                    "pull",
                    status=TaskStatus.DISPATCHED,
                    pull=True,
                    lease_until=NOW + at(seconds=2),
                    deadline=NOW + at(seconds=60),
                ),
                task("a2a", status=TaskStatus.RUNNING, a2a=ref, deadline=NOW + at(seconds=60)),
                task(
                    "old-a2a",
                    status=TaskStatus.RUNNING,
                    a2a=ref.model_copy(
                        update={"next_check_at": None, "checked_at": NOW + at(seconds=7)}
                    ),
                ),  # written before nextCheckAt: due from its last check
                task("wait", status=TaskStatus.WAITING, deadline=NOW + at(seconds=30)),
                task("wait-forever", status=TaskStatus.WAITING),
                # waiting for input: not polled, whatever its reference says
                task("a2a-input", status=TaskStatus.WAITING, a2a=ref),
                task("queued", status=TaskStatus.QUEUED, deadline=NOW - at(seconds=1)),
                task("done", status=TaskStatus.COMPLETED, deadline=NOW - at(seconds=1)),
            ]
        )
        assert await self.due(store, 0) == []
        assert await self.due(store, 2) == ["pull"]
        assert await self.due(store, 5) == ["a2a", "pull"]
        assert await self.due(store, 7) == ["a2a", "old-a2a", "pull"]
        assert await self.due(store, 10) == ["a2a", "old-a2a", "pull", "push"]
        assert await self.due(store, 30) == ["a2a", "old-a2a", "pull", "push", "wait"]
        assert await self.due(store, 10**6) == await self.due(store, 30)
        everything = sorted(t.task_id for t in await store.inflight_tasks())
        assert everything == ["a2a", "a2a-input", "old-a2a", "pull", "push", "wait", "wait-forever"]

    async def test_the_index_follows_every_write(self, store: Storage) -> None:
        soon = NOW + timedelta(seconds=5)
        waiting = task("gate", session_id="r1", status=TaskStatus.WAITING, deadline=soon)
        await store.save_run(session("r1"), [waiting, task("t1", session_id="r1")])
        assert await self.due(store, 5) == ["gate"]  # in flight as its run starts
        # a compare-and-set that moves the deadline moves the task in the index
        await store.update_task("gate", {"deadline": soon + timedelta(seconds=20)})
        assert await self.due(store, 5) == []
        assert await self.due(store, 25) == ["gate"]
        await store.update_task("gate", {"status": TaskStatus.COMPLETED})
        assert await self.due(store, 25) == [] and await store.inflight_tasks() == []
        # a hand-over that takes a slot, a report that starts it and one that ends it
        await store.create_agent(agent("a1"))
        handed = await store.update_task(
            "t1",
            {"status": TaskStatus.DISPATCHED, "deadline": soon, "agent_id": "a1"},
            claim_slot_of="a1",
        )
        assert handed is not None and await self.due(store, 5) == ["t1"]
        start = MoveOnReport(TaskStatus.RUNNING, ["dispatched"])
        await store.record_report(record("a1", "active", 1), history_limit=5, plan=start)
        assert await self.due(store, 5) == ["t1"]
        end = MoveOnReport(TaskStatus.COMPLETED, ["running"], release=True)
        await store.record_report(record("a1", "idle", 2), history_limit=5, plan=end)
        assert await self.due(store, 10**6) == [] and await store.inflight_tasks() == []


async def running_then_next(store: Storage, t2_status: TaskStatus = TaskStatus.PENDING) -> None:
    """Agent a1 running t1; t2 after it (``t2_status``), seen by this process, as a process
    that started or advanced the run has seen them."""
    await store.create_agent(agent("a1", active_tasks=["t1"]))
    await store.save_tasks(
        [
            task("t1", status=TaskStatus.RUNNING, agent_id="a1"),
            task("t2", status=t2_status, depends_on=["t1"], priority=7),
        ]
    )
    for read in (store.get_agent("a1"), store.get_task("t1"), store.get_task("t2")):
        await read


def then_queue_t2(ready_in: float = 0) -> QueuedNext:
    """t2 queued with t1's completion (TaskUpdate.then), ready in ``ready_in`` seconds."""
    ready = utcnow() + timedelta(seconds=ready_in)
    changes = {"status": TaskStatus.QUEUED, "ready_at": ready, "resolved_parameters": {"x": 1}}
    return QueuedNext("t2", changes, ready, ("pending",))


async def carried_run(store: Storage) -> list[tuple[str, MoveOnReport]]:
    """A run started through ``store`` (as by another replica): t1, then t2, its end, each
    carrying what its completion does (``TaskRun.next_step``, ``ends_run``), t1 queued; and
    per task, in turn, the plan of its agent's report that completes it (t2 queued with
    t1's completion, the run completed with t2's)."""
    from opscore.workflow.transitions import run_completion

    now = utcnow()
    first = task("t1", status=TaskStatus.QUEUED, ready_at=now, next_step=NextStep(task_id="t2"))
    last = task("t2", status=TaskStatus.PENDING, depends_on=["t1"], ends_run=True)
    await store.save_run(session("s1", status=SessionStatus.RUNNING), [first, last], queued=["t1"])
    done = (TaskStatus.COMPLETED, ["dispatched"])
    return [
        ("t1", MoveOnReport(*done, release=True, then=then_queue_t2())),
        ("t2", MoveOnReport(*done, release=True, ends=run_completion("s1", now))),
    ]


class TestNextStepWithCompletion:
    """A completion that queues its run's next step in the same write (TaskUpdate.then),
    written with an agent's report (record_report) or on its own (update_task_and_next)."""

    @pytest.fixture(params=["report", "update"])
    def via(self, request) -> str:
        return request.param

    _run = staticmethod(running_then_next)
    _then = staticmethod(then_queue_t2)

    @staticmethod
    async def _complete(
        store: Storage, via: str, then: QueuedNext, expect: str = "running"
    ) -> tuple[TaskRun | None, TaskRun | None]:
        if via == "report":
            end = MoveOnReport(TaskStatus.COMPLETED, [expect], release=True, then=then)
            written = await store.record_report(record("a1", "idle", 1), history_limit=5, plan=end)
            return written.task, written.queued
        update = TaskUpdate(
            {"status": TaskStatus.COMPLETED, "result": "done"},
            expect=[expect],
            release_slot_of="a1",
            then=then,
        )
        written = await store.update_task_and_next("t1", update)
        return written.task, written.queued

    async def test_the_next_step_is_queued_with_the_completion(
        self, store: Storage, via: str
    ) -> None:
        await self._run(store)
        done, queued = await self._complete(store, via, self._then())
        assert done is not None and done.status == TaskStatus.COMPLETED
        assert queued is not None and queued.task_id == "t2"
        assert queued.status == TaskStatus.QUEUED
        stored = await store.get_task("t2")
        assert stored.status == TaskStatus.QUEUED and stored.resolved_parameters == {"x": 1}
        assert (await store.get_task("t1")).status == TaskStatus.COMPLETED
        assert (await store.get_agent("a1")).active_tasks == []  # the slot freed with it
        assert await store.queue_depth() == 1
        taken = await store.dequeue_ready(utcnow() + timedelta(seconds=1), 10)
        assert [(e.task_id, e.priority) for e in taken] == [("t2", 7)]

    async def test_a_later_ready_time_is_kept(self, store: Storage, via: str) -> None:
        await self._run(store)
        _, queued = await self._complete(store, via, self._then(ready_in=60))
        assert queued is not None
        assert await store.dequeue_ready(utcnow(), 10) == []
        later = await store.dequeue_ready(utcnow() + timedelta(seconds=61), 10)
        assert [e.task_id for e in later] == ["t2"]

    async def test_a_step_no_longer_pending_is_left_as_it_is(
        self, store: Storage, via: str
    ) -> None:
        await self._run(store, t2_status=TaskStatus.CANCELLED)
        done, queued = await self._complete(store, via, self._then())
        assert done is not None and done.status == TaskStatus.COMPLETED
        assert queued is None
        assert (await store.get_task("t2")).status == TaskStatus.CANCELLED
        assert await store.queue_depth() == 0

    async def test_a_completion_that_does_not_apply_queues_nothing(
        self, store: Storage, via: str
    ) -> None:
        await self._run(store)
        done, queued = await self._complete(store, via, self._then(), expect="dispatched")
        assert done is None and queued is None
        assert (await store.get_task("t1")).status == TaskStatus.RUNNING
        assert (await store.get_task("t2")).status == TaskStatus.PENDING
        assert (await store.get_agent("a1")).active_tasks == ["t1"]
        assert await store.queue_depth() == 0


class TestRunEndWithCompletion:
    """A completion of a run's last step that completes the run in the same write
    (TaskUpdate.ends_run), written with an agent's report or on its own."""

    @pytest.fixture(params=["report", "update"])
    def via(self, request) -> str:
        return request.param

    @staticmethod
    async def _run(store: Storage, status: SessionStatus = SessionStatus.RUNNING) -> None:
        """Agent a1 running t1, the last step of run s1 (``status``), both seen here."""
        await store.save_session(session("s1", status=status))
        await store.create_agent(agent("a1", active_tasks=["t1"]))
        await store.save_tasks([task("t1", status=TaskStatus.RUNNING, agent_id="a1")])
        for read in (store.get_agent("a1"), store.get_task("t1"), store.get_session("s1")):
            await read

    @staticmethod
    async def _complete(
        store: Storage, via: str, expect: str = "running"
    ) -> tuple[TaskRun | None, Session | None]:
        done_at = utcnow()
        end = RunEnd(
            "s1",
            {"status": SessionStatus.COMPLETED, "finished_at": done_at, "updated_at": done_at},
            ("running",),
        )
        if via == "report":
            plan = MoveOnReport(TaskStatus.COMPLETED, [expect], release=True, ends=end)
            written = await store.record_report(record("a1", "idle", 1), history_limit=5, plan=plan)
            return written.task, written.ended
        update = TaskUpdate(
            {"status": TaskStatus.COMPLETED, "result": "done"},
            expect=[expect],
            release_slot_of="a1",
            ends_run=end,
        )
        written_alone = await store.update_task_and_next("t1", update)
        return written_alone.task, written_alone.ended

    async def test_the_run_is_completed_with_its_last_step(self, store: Storage, via: str) -> None:
        await self._run(store)
        done, ended = await self._complete(store, via)
        assert done is not None and done.status == TaskStatus.COMPLETED
        assert ended is not None and ended.status == SessionStatus.COMPLETED
        stored = await store.get_session("s1")
        assert stored.status == SessionStatus.COMPLETED and stored.finished_at is not None
        assert (await store.get_agent("a1")).active_tasks == []  # the slot freed with it
        # and it moved in the index of runs by status
        page = {"workflow_id": None, "agent_id": None, "offset": 0, "limit": 10}
        completed = await store.list_sessions(status="completed", **page)
        running = await store.list_sessions(status="running", **page)
        assert [s.session_id for s in completed.items] == ["s1"] and running.total == 0

    async def test_a_run_no_longer_running_is_left_as_it_is(self, store: Storage, via: str) -> None:
        await self._run(store, status=SessionStatus.CANCELLED)
        done, ended = await self._complete(store, via)
        assert done is not None and done.status == TaskStatus.COMPLETED
        assert ended is None
        assert (await store.get_session("s1")).status == SessionStatus.CANCELLED

    async def test_a_completion_that_does_not_apply_ends_nothing(
        self, store: Storage, via: str
    ) -> None:
        await self._run(store)
        done, ended = await self._complete(store, via, expect="dispatched")
        assert done is None and ended is None
        assert (await store.get_session("s1")).status == SessionStatus.RUNNING
        assert (await store.get_task("t1")).status == TaskStatus.RUNNING


@pytest.fixture(params=[b for b in BACKENDS if b != "memory"])
async def pair(request, tmp_path) -> tuple[Storage, Storage]:
    """Two instances of one shared store, as two Ops-Core processes hold them."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/shared.db"
    else:
        server = request.getfixturevalue(f"{request.param}_server")
        server.flush()
        url = server.url
    a, b = storage_from_url(url), storage_from_url(url)
    await a.open()
    await b.open()
    yield a, b
    await a.close()
    await b.close()


class TestSharedStore:
    """What one process last read is only a guess when another process shares the store."""

    async def test_the_fleet_another_process_changes_is_what_the_next_reads_show(
        self, pair
    ) -> None:
        """Agents created, changed and deleted by another process: a read of the fleet shows
        them as they are now, soon (Redis tells of another process's writes on a connection
        of their own, a moment after the write's answer: the reads are polled, bounded)."""
        a, b = pair
        await b.save_agent(agent("stays", state="idle"))
        await b.save_agent(agent("goes", state="idle"))
        await b.save_agent(agent("busy", state="idle"))
        await soon_shows(a, {"stays", "goes", "busy"})
        await b.delete_agent("goes")
        await b.save_agent(agent("new", state="idle"))
        await b.record_state(record("busy", "active", 1), history_limit=10)
        await soon_shows(a, {"stays", "new"})
        listed = await a.list_agents(state=None, capability=None, offset=0, limit=10)
        assert agent_ids(listed.items) == {"stays", "new", "busy"}
        # a deletion and a creation between two reads: as many agents as before, not the same
        await b.delete_agent("stays")
        await b.save_agent(agent("newer", state="idle"))
        await soon_shows(a, {"new", "newer"})

    async def test_a_stale_read_never_decides_a_task_change(self, pair) -> None:
        a, b = pair
        await a.save_tasks([task("t1", status=TaskStatus.QUEUED)])
        assert (await a.get_task("t1")).status == TaskStatus.QUEUED  # a remembers 'queued'
        await b.update_task("t1", {"status": TaskStatus.DISPATCHED, "attempts": 1})
        # a's guess says queued: the store says dispatched, and the store decides
        assert await a.update_task("t1", {"status": TaskStatus.FAILED}, expect=["queued"]) is None
        moved = await a.update_task(
            "t1", {"status": TaskStatus.RUNNING}, expect=["dispatched"], attempt=1
        )
        assert moved is not None and moved.status == TaskStatus.RUNNING and moved.attempts == 1
        assert (await b.get_task("t1")).status == TaskStatus.RUNNING

    async def test_state_reports_and_sessions_written_on_a_stale_guess_lose_nothing(
        self, pair
    ) -> None:
        a, b = pair
        await a.save_agent(agent("w"))
        await a.record_state(record("w", "idle", 1), history_limit=10)  # a remembers 'idle'
        await b.record_state(record("w", "active", 2), history_limit=10)
        updated, duplicate = await a.record_state(record("w", "idle", 3), history_limit=10)
        assert not duplicate and updated.state == "idle"
        history = await b.state_history("w", offset=0, limit=10)
        assert [r.state for r in history.items] == ["idle", "active", "idle"]
        await a.save_session(session("s1"))
        assert (await a.get_session("s1")).status == SessionStatus.RUNNING
        await b.update_session("s1", {"status": SessionStatus.COMPLETED})
        assert (
            await a.update_session("s1", {"status": SessionStatus.FAILED}, expect=["running"])
            is None
        )
        assert (await a.get_session("s1")).status == SessionStatus.COMPLETED

    async def test_agent_slots_and_sessions_follow_the_store_not_the_guess(self, pair) -> None:
        a, b = pair
        await a.save_agent(agent("w", max_concurrency=1))
        assert await a.get_agent("w") is not None  # a remembers a free slot
        assert await b.claim_agent_slot("w", "t1")
        assert not await a.claim_agent_slot("w", "t2")  # full, whatever a saw
        await b.release_agent_slot("w", "t1")
        assert await a.claim_agent_slot("w", "t2")
        assert (await b.get_agent("w")).active_tasks == ["t2"]

        await a.save_session(session("s"))
        await b.update_session("s", {"status": SessionStatus.CANCELLED})
        assert (
            await a.update_session("s", {"status": SessionStatus.COMPLETED}, expect=["running"])
            is None
        )
        assert (await a.get_session("s")).status == SessionStatus.CANCELLED

    async def test_a_slot_freed_with_a_move_keeps_what_another_process_wrote(self, pair) -> None:
        a, b = pair
        await a.save_agent(agent("w", max_concurrency=2, active_tasks=["t1"]))
        await a.save_tasks([task("t1", status=TaskStatus.RUNNING, agent_id="w")])
        assert (await a.get_agent("w")).active_tasks == ["t1"]  # a's guesses
        assert (await a.get_task("t1")).status == TaskStatus.RUNNING
        await b.record_state(record("w", "busy", 1), history_limit=10)
        assert await b.claim_agent_slot("w", "t2")
        done = await a.update_task(
            "t1", {"status": TaskStatus.COMPLETED}, expect=["running"], release_slot_of="w"
        )
        assert done is not None
        found = await b.get_agent("w")
        assert found.active_tasks == ["t2"] and found.state == "busy"

    async def test_a_report_moves_the_task_the_store_says_its_agent_holds(self, pair) -> None:
        a, b = pair
        await a.save_agent(agent("w", max_concurrency=1, active_tasks=["t1"]))
        await a.save_tasks(
            [
                task("t1", status=TaskStatus.DISPATCHED, agent_id="w"),
                task("t2", status=TaskStatus.DISPATCHED, agent_id="w"),
            ]
        )
        assert (await a.get_agent("w")).active_tasks == ["t1"]  # a's guess
        await b.update_task("t1", {"status": TaskStatus.CANCELLED}, release_slot_of="w")
        assert await b.claim_agent_slot("w", "t2")
        start = MoveOnReport(TaskStatus.RUNNING, ["dispatched"])
        written = await a.record_report(record("w", "active", 1), history_limit=5, plan=start)
        # the report is written; t1 (the guess) is never moved; t2 is, now or by the caller
        assert written.agent.state == "active" and written.agent.active_tasks == ["t2"]
        assert (await b.get_task("t1")).status == TaskStatus.CANCELLED
        if written.task is not None:
            assert written.task.task_id == "t2"
            assert (await b.get_task("t2")).status == TaskStatus.RUNNING
        assert (await b.get_agent("w")).state == "active"
        # a stale guess of the task: the store's status decides
        await b.update_task("t2", {"status": TaskStatus.RUNNING})
        end = MoveOnReport(TaskStatus.COMPLETED, ["running"], release=True)
        written = await a.record_report(record("w", "idle", 2), history_limit=5, plan=end)
        assert written.task is not None and written.task.task_id == "t2"
        assert (await b.get_agent("w")).active_tasks == []
        assert (await b.get_task("t2")).status == TaskStatus.COMPLETED

    async def test_a_hand_over_decided_on_a_stale_sight_follows_the_store(self, pair) -> None:
        a, b = pair
        await a.save_agent(agent("w", max_concurrency=1))
        await a.save_tasks([task(f"t{i}", status=TaskStatus.QUEUED) for i in (1, 2, 3, 4)])
        assert (await a.get_agent("w")).active_tasks == []  # a's sight: a free slot
        assert (await a.get_task("t1")).status == TaskStatus.QUEUED
        start = {"status": TaskStatus.DISPATCHED, "agent_id": "w"}
        assert await b.update_task("t2", start, expect=["queued"], claim_slot_of="w")
        with pytest.raises(NoFreeSlotError):  # full, whatever a saw
            await a.update_task("t1", start, expect=["queued"], claim_slot_of="w")
        assert (await b.get_task("t1")).status == TaskStatus.QUEUED
        await b.release_agent_slot("w", "t2")
        await b.update_task("t1", {"status": TaskStatus.CANCELLED})
        # a's sight: w full, t1 queued; the store: w free, t1 cancelled: nothing, no slot held
        assert await a.update_task("t1", start, expect=["queued"], claim_slot_of="w") is None
        assert (await b.get_agent("w")).active_tasks == []
        await b.update_task("t1", {"status": TaskStatus.QUEUED})
        started = await a.update_task("t1", start, expect=["queued"], claim_slot_of="w")
        assert started is not None and started.status == TaskStatus.DISPATCHED
        assert (await b.get_agent("w")).active_tasks == ["t1"]
        assert (await b.get_task("t1")).status == TaskStatus.DISPATCHED
        # two processes starting tasks on the last free slot at once: one wins
        await b.release_agent_slot("w", "t1")
        results = await asyncio.gather(
            a.update_task("t3", start, expect=["queued"], claim_slot_of="w"),
            b.update_task("t4", start, expect=["queued"], claim_slot_of="w"),
            return_exceptions=True,
        )
        won = [r.task_id for r in results if isinstance(r, TaskRun)]
        assert len(won) == 1 and sum(isinstance(r, NoFreeSlotError) for r in results) == 1
        assert (await a.get_agent("w")).active_tasks == won
        (lost,) = {"t3", "t4"} - set(won)
        assert (await a.get_task(lost)).status == TaskStatus.QUEUED

    async def test_a_report_naming_a_task_another_process_handed_over_moves_it_at_once(
        self, pair
    ) -> None:
        """Replicas behind a load balancer: the report reaches a process whose sight of the
        agent and task predates the hand-over. The task still moves in the report's write,
        not in the caller's three after it."""
        a, b = pair
        await a.save_agent(agent("w", max_concurrency=1))
        await a.save_tasks([task("t1", status=TaskStatus.QUEUED)])
        assert (await a.get_agent("w")).active_tasks == []  # a's sight: no task held
        assert (await a.get_task("t1")).status == TaskStatus.QUEUED  # and t1 queued
        handed = await b.update_task(
            "t1",
            {"status": TaskStatus.DISPATCHED, "agent_id": "w", "attempts": 1},
            expect=["queued"],
            claim_slot_of="w",
        )
        assert handed is not None
        start = MoveOnReport(TaskStatus.RUNNING, ["dispatched"])
        active = record("w", "active", 1, opscore_task_id="t1")
        written = await a.record_report(active, history_limit=5, plan=start)
        assert written.task is not None and written.task.status == TaskStatus.RUNNING
        assert written.agent.active_tasks == ["t1"] and written.agent.state == "active"
        assert (await b.get_task("t1")).status == TaskStatus.RUNNING
        # b's sight of both is from its hand-over, before a's write
        end = MoveOnReport(TaskStatus.COMPLETED, ["running"], release=True)
        idle = record("w", "idle", 2, opscore_task_id="t1")
        written = await b.record_report(idle, history_limit=5, plan=end)
        assert written.task is not None and written.task.status == TaskStatus.COMPLETED
        assert (await a.get_agent("w")).active_tasks == []
        # a task the agent does not hold, by the store too: the report alone is written
        late = record("w", "idle", 3, opscore_task_id="t1")
        written = await a.record_report(late, history_limit=5, plan=end)
        assert written.task is None and not written.duplicate
        assert (await b.get_task("t1")).status == TaskStatus.COMPLETED
        history = await b.state_history("w", offset=0, limit=10)
        assert [r.state for r in history.items] == ["idle", "idle", "active"]

    async def test_reports_with_their_task_from_two_processes_at_once_lose_nothing(
        self, pair
    ) -> None:
        """Each applied report wrote its task too, whichever process it reached; a report
        older than one applied first is refused, never half written (nor a deadlock)."""
        a, b = pair
        await a.save_agent(agent("w", active_tasks=["t1"]))
        await a.save_tasks([task("t1", status=TaskStatus.RUNNING, agent_id="w")])
        await a.get_agent("w")
        await b.get_agent("w")
        plan = MoveOnReport(TaskStatus.RUNNING, ["running"])
        reports = [record("w", "busy", i, n=i) for i in range(1, 21)]

        async def send(store: Storage, report: StateRecord) -> bool:
            try:
                written = await store.record_report(report, history_limit=50, plan=plan)
            except ConflictError:
                return False  # a newer report came first
            assert written.task is not None  # the report and its task, together
            return True

        applied = await asyncio.gather(*(send(a if i % 2 else b, r) for i, r in enumerate(reports)))
        history = await a.state_history("w", offset=0, limit=50)
        assert history.total == sum(applied) >= 1
        newest = max(r.timestamp for r, ok in zip(reports, applied, strict=True) if ok)
        assert (await b.get_agent("w")).state_timestamp == newest

    async def test_an_agent_registered_elsewhere_takes_reports_here(self, pair) -> None:
        a, b = pair
        assert await a.get_agent("late") is None  # a remembers: no such agent
        await b.create_agent(agent("late"))
        recorded, duplicate = await a.record_state(record("late", "idle", 1), history_limit=5)
        assert recorded.state == "idle" and not duplicate
        with pytest.raises(ConflictError):  # refusals stand when the store agrees
            await a.record_state(record("late", "busy", -60), history_limit=5)
        await b.delete_agent("late")
        with pytest.raises(NotFoundError):
            await a.record_state(record("late", "idle", 2), history_limit=5)

    async def test_concurrent_changes_from_two_processes_have_one_winner(self, pair) -> None:
        a, b = pair
        await a.save_tasks([task("t1", status=TaskStatus.RUNNING)])
        await b.get_task("t1")
        results = await asyncio.gather(
            *(
                (a if i % 2 else b).update_task(
                    "t1", {"status": TaskStatus.COMPLETED, "result": i}, expect=["running"]
                )
                for i in range(20)
            )
        )
        assert sum(r is not None for r in results) == 1


class TestQueue:
    async def test_priority_fifo_delay_requeue_and_ack(self, store: Storage) -> None:
        now = utcnow()
        await store.enqueue("low-1", priority=0, ready_at=now)
        await store.enqueue("high", priority=5, ready_at=now)
        await store.enqueue("low-2", priority=0, ready_at=now)
        await store.enqueue("later", priority=9, ready_at=now + timedelta(seconds=30))
        assert await store.queue_depth() == 4
        got = await store.dequeue_ready(now, 10)
        assert [e.task_id for e in got] == ["high", "low-1", "low-2"]
        assert (
            abs((await store.next_ready_at(now) - (now + timedelta(seconds=30))).total_seconds())
            < 0.01
        )
        await store.requeue(got[1:])
        await store.ack(["high"])
        again = await store.dequeue_ready(now, 1)
        assert [e.task_id for e in again] == ["low-1"]
        await store.ack(["low-1"])
        later = await store.dequeue_ready(now + timedelta(seconds=31), 10)
        assert [e.task_id for e in later] == ["later", "low-2"]
        await store.ack(["later", "low-2"])
        assert await store.queue_depth() == 0 and await store.next_ready_at(now) is None

    async def test_the_oldest_entry_counts_until_acknowledged_whether_seen_due_or_not(
        self, store: Storage
    ) -> None:
        """``oldest_ready_at``: the earliest ready-at of the entries ready by then and not yet
        acknowledged, whether a claim has found them due, holds them, or put them back; an
        entry not yet ready counts once its time has come, and ``next_ready_at`` names it."""

        def near(found: datetime | None, expected: datetime) -> bool:
            return found is not None and abs(found - expected) < timedelta(milliseconds=5)

        now = utcnow()
        first, second = now - timedelta(seconds=10), now - timedelta(seconds=5)
        later = now + timedelta(seconds=30)
        await store.enqueue("first", priority=0, ready_at=first)
        await store.enqueue("second", priority=9, ready_at=second)
        await store.enqueue("later", priority=9, ready_at=later)
        assert near(await store.oldest_ready_at(now), first)  # none seen by a claim yet
        claimed = await store.dequeue_ready(now, 1)
        assert [e.task_id for e in claimed] == ["second"]
        assert near(await store.oldest_ready_at(now), first)
        held = await store.dequeue_ready(now, 1)
        assert [e.task_id for e in held] == ["first"]
        assert near(await store.oldest_ready_at(now), first)  # held by a pass: it still waits
        await store.ack(["first"])
        await store.requeue(claimed)
        assert near(await store.oldest_ready_at(now), second)  # seen due, put back
        assert near(await store.next_ready_at(now), later)
        assert [e.task_id for e in await store.dequeue_ready(now, 5)] == ["second"]
        await store.ack(["second"])
        assert await store.oldest_ready_at(now) is None  # "later" is not ready yet
        after = later + timedelta(seconds=1)
        assert near(await store.oldest_ready_at(after), later)
        assert [e.task_id for e in await store.dequeue_ready(after, 5)] == ["later"]
        await store.ack(["later"])
        assert await store.oldest_ready_at(after) is None
        assert await store.next_ready_at(now) is None

    async def test_an_attempt_that_starts_acknowledges_its_leased_entry(
        self, store: Storage
    ) -> None:
        """``update_task(ack_entry=True)``, as the dispatcher starts every attempt: the
        entry its pass leased is acknowledged with the move, and only when the move applies;
        an entry queued again meanwhile stays."""
        now = utcnow()
        start = {"status": TaskStatus.DISPATCHED}
        await store.create_agent(agent("a1", max_concurrency=1))
        await store.create_agent(agent("a2", max_concurrency=4))
        ids = [f"t{i}" for i in range(6)]
        await store.save_tasks([task(t, status=TaskStatus.QUEUED) for t in ids])
        for t in ids:
            await store.enqueue(t, priority=0, ready_at=now - timedelta(seconds=10))
        assert [e.task_id for e in await store.dequeue_ready(now, 10)] == ids  # all leased

        def age(at) -> int | None:
            return None if at is None else round((now - at).total_seconds())

        refused = await store.update_task(
            "t0", start, expect=["running"], claim_slot_of="a1", ack_entry=True
        )
        assert refused is None  # the move did not apply: its entry stays leased
        assert await store.update_task(
            "t0", start, expect=["queued"], claim_slot_of="a1", ack_entry=True
        )
        with pytest.raises(NoFreeSlotError):  # a1 is full: nothing written, nothing acked
            await store.update_task(
                "t1", start, expect=["queued"], claim_slot_of="a1", ack_entry=True
            )
        # several at once (Redis runs them in one script; their acks together at its end)
        started = await asyncio.gather(
            *(
                store.update_task(t, start, expect=["queued"], claim_slot_of="a2", ack_entry=True)
                for t in ("t2", "t3", "t4")
            )
        )
        assert all(started)
        await store.enqueue("t5", priority=0, ready_at=now)  # a retry, queued again
        assert await store.update_task(
            "t5", start, expect=["queued"], claim_slot_of="a2", ack_entry=True
        )
        # t1 (refused) is still waiting for its pass's ack or requeue; t5's new entry stays
        assert age(await store.oldest_ready_at(now)) == 10
        await store.ack(["t1"])
        assert age(await store.oldest_ready_at(now)) == 0  # only t5's new entry is left
        assert [e.task_id for e in await store.dequeue_ready(now, 10)] == ["t5"]
        await store.ack(["t5"])
        assert await store.oldest_ready_at(now) is None
        assert await store.queue_depth() == 0

    async def test_entries_come_out_with_the_priority_they_went_in_with(
        self, store: Storage
    ) -> None:
        """From the highest priority to the lowest, FIFO within one, straight to the ready
        set or after a delay, and put back."""
        now = utcnow()
        for task_id, priority in (("lo", -1000), ("hi", 1000), ("mid-1", 0), ("mid-2", 0)):
            await store.enqueue(task_id, priority=priority, ready_at=now)
        await store.enqueue("late", priority=-1000, ready_at=now + timedelta(seconds=5))
        got = await store.dequeue_ready(now, 10)
        order = [("hi", 1000), ("mid-1", 0), ("mid-2", 0), ("lo", -1000)]
        assert [(e.task_id, e.priority) for e in got] == order
        assert got[1].seq < got[2].seq
        await store.requeue(got[2:])
        again = await store.dequeue_ready(now, 10)
        assert [(e.task_id, e.priority) for e in again] == order[2:]
        await store.ack([e.task_id for e in got])
        late = await store.dequeue_ready(now + timedelta(seconds=6), 10)
        assert [(e.task_id, e.priority) for e in late] == [("late", -1000)]

    async def test_entries_put_back_do_not_set_the_dispatchers_alarm(self, store: Storage) -> None:
        """next_ready_at says how long the dispatcher may sleep: entries waiting for a busy
        agent do not count (counting them woke it every millisecond), delayed ones do."""
        now = utcnow()
        await store.enqueue("busy-1", priority=0, ready_at=now)
        await store.enqueue("busy-2", priority=0, ready_at=now - timedelta(seconds=5))
        got = await store.dequeue_ready(now, 10)
        await store.requeue(got)  # no agent free: they wait
        later = now + timedelta(seconds=1)
        assert await store.next_ready_at(later) is None
        await store.enqueue("delayed", priority=0, ready_at=now + timedelta(seconds=30))
        alarm = await store.next_ready_at(later)
        assert alarm is not None
        assert abs((alarm - (now + timedelta(seconds=30))).total_seconds()) < 0.01
        assert sorted(e.task_id for e in await store.dequeue_ready(later, 10)) == [
            "busy-1",
            "busy-2",
        ]

    async def test_oldest_ready_entry_says_how_far_dispatch_is_behind(self, store: Storage) -> None:
        now = utcnow()
        assert await store.oldest_ready_at(now) is None
        await store.enqueue("old", priority=0, ready_at=now - timedelta(seconds=20))
        await store.enqueue("new", priority=9, ready_at=now - timedelta(seconds=5))
        await store.enqueue("later", priority=0, ready_at=now + timedelta(seconds=30))

        def age(at) -> float:
            return round((now - at).total_seconds())

        assert age(await store.oldest_ready_at(now)) == 20  # not yet moved, still waiting
        got = await store.dequeue_ready(now, 1)  # the high-priority one is being handed over
        assert [e.task_id for e in got] == ["new"]
        assert age(await store.oldest_ready_at(now)) == 20
        old = await store.dequeue_ready(now, 1)
        assert [e.task_id for e in old] == ["old"]
        # both held by a pass: neither has gone anywhere yet, the oldest still waits (the
        # gauge does not drop to 0 for the moment of each pass)
        assert age(await store.oldest_ready_at(now)) == 20
        await store.ack(["new"])  # handed over
        assert age(await store.oldest_ready_at(now)) == 20
        await store.requeue(old)  # no agent after all: it waits again, as old as before
        assert age(await store.oldest_ready_at(now)) == 20
        assert age(await store.oldest_ready_at(now + timedelta(seconds=40))) == 20
        again = await store.dequeue_ready(now, 10)
        assert [e.task_id for e in again] == ["old"]
        await store.ack(["old"])
        assert await store.oldest_ready_at(now) is None  # "later" not yet due
        assert age(await store.oldest_ready_at(now + timedelta(seconds=40))) == -30

    async def test_reenqueue_replaces_and_each_entry_goes_to_one_caller(
        self, store: Storage
    ) -> None:
        now = utcnow()
        await store.enqueue("t", priority=0, ready_at=now)
        await store.enqueue("t", priority=0, ready_at=now + timedelta(seconds=5))
        assert await store.dequeue_ready(now, 10) == []
        for i in range(50):
            await store.enqueue(f"job-{i}", priority=0, ready_at=now)
        batches = await asyncio.gather(*(store.dequeue_ready(now, 7) for _ in range(10)))
        ids = [e.task_id for batch in batches for e in batch]
        assert len(ids) == len(set(ids)) == 50

    async def test_an_entry_queued_again_while_leased_outlives_its_old_lease(
        self, store: Storage
    ) -> None:
        now = utcnow()
        await store.enqueue("t", priority=0, ready_at=now)
        assert [e.task_id for e in await store.dequeue_ready(now, 10)] == ["t"]  # leased
        await store.enqueue("t", priority=0, ready_at=now)  # a retry queued meanwhile
        await store.ack(["t"])  # the old hand-over ends: the new entry stays
        assert [e.task_id for e in await store.dequeue_ready(now, 10)] == ["t"]
        await store.ack(["t"])
        assert await store.queue_depth() == 0 and await store.next_ready_at(now) is None
        assert await store.oldest_ready_at(now) is None

        # one entry, wherever the last enqueue put it: ready, delayed, ready again
        await store.enqueue("u", priority=0, ready_at=now)
        await store.enqueue("u", priority=0, ready_at=now + timedelta(seconds=30))
        assert await store.dequeue_ready(now, 10) == []
        await store.enqueue("u", priority=0, ready_at=now)
        assert [e.task_id for e in await store.dequeue_ready(now, 10)] == ["u"]
        await store.ack(["u"])
        assert await store.dequeue_ready(now + timedelta(seconds=60), 10) == []
        assert await store.queue_depth() == 0 and await store.next_ready_at(now) is None


class TestDeadLettersAndIdempotency:
    async def test_dead_letters_newest_first_and_pop(self, store: Storage) -> None:
        for i in range(3):
            await store.add_dead_letter(
                DeadLetter(
                    task_id=f"t{i}",
                    session_id="s",
                    step_id="x",
                    attempts=3,
                    dead_lettered_at=utcnow(),
                )
            )
        page = await store.list_dead_letters(offset=0, limit=2)
        assert page.total == 3 and [d.task_id for d in page.items] == ["t2", "t1"]
        assert (await store.pop_dead_letter("t1")).task_id == "t1"
        assert await store.pop_dead_letter("t1") is None
        assert (await store.list_dead_letters(offset=0, limit=10)).total == 2

    async def test_idempotency_keys_map_once_within_ttl(self, store: Storage) -> None:
        now = utcnow()
        assert await store.remember_idempotency_key("k", "s1", now=now, ttl=60) is None
        assert await store.remember_idempotency_key("k", "s2", now=now, ttl=60) == "s1"
        await store.forget_idempotency_key("k")
        assert await store.remember_idempotency_key("k", "s3", now=now, ttl=60) is None
        results = await asyncio.gather(
            *(store.remember_idempotency_key("race", f"s{i}", now=now, ttl=60) for i in range(20))
        )
        assert results.count(None) == 1

    async def test_ping(self, store: Storage) -> None:
        await store.ping()


class TestDocuments:
    """Subscriptions, deliveries and schedules: documents by kind and id, claimed when due."""

    async def test_put_get_list_by_prefix_both_ways_and_delete(self, store: Storage) -> None:
        for doc_id in ("sub-a:002", "sub-a:001", "sub-b:001", "sub-a%:9"):
            await store.put_document("delivery", doc_id, f'{{"id": "{doc_id}"}}', due_at=None)
        await store.put_document("schedule", "sub-a:003", "{}", due_at=None)  # another kind
        assert await store.get_document("delivery", "sub-a:001") == '{"id": "sub-a:001"}'
        assert await store.get_document("delivery", "nope") is None
        page = await store.list_documents("delivery", prefix="sub-a:", offset=0, limit=10)
        assert page.items == ['{"id": "sub-a:001"}', '{"id": "sub-a:002"}'] and page.total == 2
        newest = await store.list_documents(
            "delivery", prefix="sub-a:", offset=0, limit=1, newest_first=True
        )
        assert newest.items == ['{"id": "sub-a:002"}'] and newest.total == 2
        everything = await store.list_documents("delivery", offset=1, limit=2)
        assert everything.total == 4 and len(everything.items) == 2
        assert await store.delete_document("delivery", "sub-a:001")
        assert not await store.delete_document("delivery", "sub-a:001")
        assert (
            await store.list_documents("delivery", prefix="sub-a:", offset=0, limit=9)
        ).total == 1

    async def test_a_guarded_put_writes_only_over_what_it_expects(self, store: Storage) -> None:
        assert not await store.put_document("schedule", "s", "v1", due_at=None, expect="v0")
        assert await store.put_document("schedule", "s", "v1", due_at=None)
        assert not await store.put_document("schedule", "s", "v2", due_at=None, expect="v0")
        assert await store.put_document("schedule", "s", "v2", due_at=None, expect="v1")
        assert await store.get_document("schedule", "s") == "v2"
        assert not await store.put_document("schedule", "s", "v3", due_at=None, only_new=True)
        assert await store.put_document("schedule", "t", "t1", due_at=None, only_new=True)
        assert await store.get_document("schedule", "s") == "v2"
        assert await store.get_document("schedule", "t") == "t1"

    async def test_due_documents_are_claimed_oldest_first_under_a_lease(
        self, store: Storage
    ) -> None:
        now = utcnow()
        await store.put_document("job", "late", "L", due_at=now - timedelta(seconds=5))
        await store.put_document("job", "early", "E", due_at=now - timedelta(seconds=9))
        await store.put_document("job", "later", "X", due_at=now + timedelta(seconds=60))
        await store.put_document("job", "never", "N", due_at=None)
        assert await store.claim_due("job", now, limit=1, lease_seconds=30) == ["E"]
        assert await store.claim_due("job", now, limit=10, lease_seconds=30) == ["L"]
        assert await store.claim_due("job", now, limit=10, lease_seconds=30) == []
        # a claimer that never puts the document back loses it when the lease runs out
        again = await store.claim_due(
            "job", now + timedelta(seconds=31), limit=10, lease_seconds=30
        )
        assert sorted(again) == ["E", "L"]
        # putting it back with no due time takes it out of the claims for good
        await store.put_document("job", "early", "E2", due_at=None)
        later = now + timedelta(seconds=120)
        assert sorted(await store.claim_due("job", later, limit=10, lease_seconds=30)) == ["L", "X"]
        assert await store.delete_document("job", "late")
        assert await store.claim_due(
            "job", later + timedelta(minutes=5), limit=10, lease_seconds=1
        ) == ["X"]

    async def test_concurrent_claims_give_each_document_to_one_caller(self, store: Storage) -> None:
        now = utcnow()
        for i in range(40):
            await store.put_document("job", f"j{i:02d}", str(i), due_at=now)
        claims = await asyncio.gather(
            *(store.claim_due("job", now, limit=7, lease_seconds=30) for _ in range(8))
        )
        taken = [doc for claim in claims for doc in claim]
        assert sorted(taken, key=int) == [str(i) for i in range(40)]


class TestSharedDocuments:
    async def test_two_processes_never_claim_one_document_twice(self, pair) -> None:
        a, b = pair
        now = utcnow()
        for i in range(30):
            await a.put_document("job", f"j{i:02d}", str(i), due_at=now)
        claims = await asyncio.gather(
            *(s.claim_due("job", now, limit=4, lease_seconds=30) for s in (a, b) * 5)
        )
        taken = sorted((doc for claim in claims for doc in claim), key=int)
        assert taken == [str(i) for i in range(30)]
        assert await b.put_document("job", "j00", "changed", due_at=None, expect="0")
        assert not await a.put_document("job", "j00", "mine", due_at=None, expect="0")


@pytest.fixture(params=["redis", "postgresql"])
async def channel(request) -> Storage:
    """A store that replicas share logs and spans through."""
    server = request.getfixturevalue(f"{request.param}_server")
    server.flush()
    storage = storage_from_url(server.url)
    await storage.open()
    yield storage
    await storage.close()


class TestTelemetryChannel:
    async def test_batches_are_read_in_order_and_the_cursor_moves_on(self, channel) -> None:
        await channel.publish_telemetry("r1", [("log", '{"n": 1}'), ("span", '{"n": 2}')])
        await channel.publish_telemetry("r2", [("log", '{"n": 3}')])
        cursor, entries = await channel.read_telemetry(None, 100)
        assert [(o, k, d) for _, o, k, d in entries] == [
            ("r1", "log", '{"n": 1}'),
            ("r1", "span", '{"n": 2}'),
            ("r2", "log", '{"n": 3}'),
        ]
        assert await channel.read_telemetry(cursor, 100) == (cursor, [])
        await channel.publish_telemetry("r1", [("up", "{}")])
        cursor2, more = await channel.read_telemetry(cursor, 100)
        assert [(o, k) for _, o, k, _ in more] == [("r1", "up")] and cursor2 != cursor

    async def test_a_readers_own_entries_are_passed_over(self, channel) -> None:
        await channel.publish_telemetry("me", [("log", '{"n": 1}')])
        await channel.publish_telemetry("other", [("span", '{"n": 2}')])
        await channel.publish_telemetry("me", [("log", '{"n": 3}'), ("up", "{}")])
        cursor, entries = await channel.read_telemetry(None, 100, passing_over="me")
        assert [(o, k, d) for _, o, k, d in entries] == [("other", "span", '{"n": 2}')]
        # the cursor is past the reader's own entries too: nothing is read again
        assert await channel.read_telemetry(cursor, 100, passing_over="me") == (cursor, [])
        await channel.publish_telemetry("me", [("log", '{"n": 4}')])
        cursor2, more = await channel.read_telemetry(cursor, 100, passing_over="me")
        assert more == [] and cursor2 != cursor
        await channel.publish_telemetry("other", [("log", '{"n": 5}')])
        _, last = await channel.read_telemetry(cursor2, 100, passing_over="me")
        assert [d for _, _, _, d in last] == ['{"n": 5}']

    async def test_the_channel_is_bounded_in_entries_and_so_is_a_read(self, channel) -> None:
        """A publish of many entries is stored in batches of at most TELEMETRY_BATCH, about
        TELEMETRY_KEEP of them kept; a read takes ``limit`` batches. A batch once held a whole
        publish (1,000 entries under load): the channel came to hundreds of MB, all of it read
        by a replica's first look."""
        from opscore.storage.base import TELEMETRY_BATCH, TELEMETRY_KEEP

        async def read(after: str | None, limit: int) -> list[str]:
            """What a replica that starts now reads, page after page from ``after``."""
            reader = storage_from_url(channel.url)
            await reader.open()
            try:
                if after is None:
                    return [d for *_, d in (await reader.read_telemetry(None, limit))[1]]
                got: list[str] = []
                for _ in range(TELEMETRY_KEEP):  # bounded
                    after, page = await reader.read_telemetry(after, limit)
                    if not page:
                        return got
                    assert len(page) <= limit * TELEMETRY_BATCH
                    got += [d for *_, d in page]
                return got
            finally:
                await reader.close()

        many = [("log", f'{{"n": {i}}}') for i in range(TELEMETRY_BATCH * 5 // 2)]
        await channel.publish_telemetry("r1", many)
        assert await read(None, 2) == [d for _, d in many[TELEMETRY_BATCH:]]  # the newest two
        assert await read("0", 1) == [d for _, d in many]  # in order, none lost
        ten = [("log", "{}")] * TELEMETRY_BATCH * 10  # a full publish: ten batches
        for _ in range(TELEMETRY_KEEP // 10 * 3):  # three times as many batches as are kept
            await channel.publish_telemetry("r1", ten)
        kept = len(await read("0", 50))
        assert TELEMETRY_KEEP * TELEMETRY_BATCH <= kept <= TELEMETRY_KEEP * TELEMETRY_BATCH * 2

    async def test_redis_reads_entries_written_one_record_each(self, redis_server) -> None:
        redis_server.flush()
        storage = storage_from_url(redis_server.url)
        await storage.open()
        try:
            key = storage.k("telemetry")  # type: ignore[attr-defined]
            await storage._redis.xadd(key, {"o": "old", "k": "log", "d": '{"n": 0}'})  # type: ignore[attr-defined]
            await storage.publish_telemetry("new", [("log", '{"n": 1}')])
            _, entries = await storage.read_telemetry(None, 10)
            assert [(o, d) for _, o, _, d in entries] == [("old", '{"n": 0}'), ("new", '{"n": 1}')]
        finally:
            await storage.close()


async def test_postgresql_reads_rows_written_one_record_each(postgresql_server) -> None:
    """Replicas before batching wrote a row per record: still read, beside the batches."""
    postgresql_server.flush()
    storage = storage_from_url(postgresql_server.url)
    await storage.open()
    try:
        postgresql_server.sql(
            "INSERT INTO opscore_telemetry (origin, kind, data) VALUES ('old', 'log', '{\"n\": 0}')"
        )
        await storage.publish_telemetry("new", [("log", '{"n": 1}'), ("span", '{"n": 2}')])
        _, entries = await storage.read_telemetry(None, 10)
        assert [(o, k, d) for _, o, k, d in entries] == [
            ("old", "log", '{"n": 0}'),
            ("new", "log", '{"n": 1}'),
            ("new", "span", '{"n": 2}'),
        ]
    finally:
        await storage.close()


async def test_redis_reads_a_reporting_agents_task_along_with_its_state(
    redis_counted, monkeypatch
) -> None:
    """The task a report is applied to comes with the agent's state change (one round trip,
    not two), unless this process wrote the task since; a second read asks Redis again."""
    store, calls = redis_counted

    def gets() -> int:
        return calls("get")

    await store.create_agent(agent("a1", active_tasks=["t1"]))
    await store.save_tasks([task("t1", status=TaskStatus.RUNNING)])
    await store.record_state(record("a1", "active", 1), history_limit=10)
    before = gets()
    assert (await store.get_task("t1")).status == TaskStatus.RUNNING
    assert gets() == before  # read along with the report
    assert (await store.get_task("t1")).status == TaskStatus.RUNNING
    assert gets() == before + 1  # used once
    await store.record_state(record("a1", "idle", 2), history_limit=10)
    await store.update_task("t1", {"status": TaskStatus.COMPLETED})
    assert (await store.get_task("t1")).status == TaskStatus.COMPLETED
    # a chain that never reads what it read along does not keep it past its use
    from opscore.storage.redis import base

    monkeypatch.setattr(base, "ALONG_SECONDS", 0.0)
    for i in range(5):
        store._read_along([f"opscore:task:other-{i}"], ["{}"])
    assert list(base._ALONG.get() or {}) == ["opscore:task:other-4"]


async def test_redis_changes_of_one_record_from_one_process_wait_for_each_other(
    redis_counted,
) -> None:
    """Two changes of one task at once (a hand-over's answer and the agent's report): the
    second is decided on what the first wrote, not refused by Redis and sent again."""
    store, calls = redis_counted
    await store.create_agent(agent("a1", active_tasks=["t1"]))
    await store.save_tasks(
        [task("t1", status=TaskStatus.DISPATCHED, agent_id="a1", awaiting_answer=True)]
    )
    await store.get_task("t1")
    before = calls("evalsha")
    answered, started = await asyncio.gather(
        store.update_task("t1", {"awaiting_answer": False}),
        store.record_report(
            record("a1", "active", 1),
            history_limit=5,
            plan=MoveOnReport(TaskStatus.RUNNING, ["dispatched"]),
        ),
    )
    assert answered is not None and started.task is not None
    assert calls("evalsha") == before + 2  # one script each, none refused
    found = await store.get_task("t1")
    assert found.status == TaskStatus.RUNNING and not found.awaiting_answer


async def test_redis_reads_a_run_along_with_the_completion_of_its_task(redis_counted) -> None:
    """The run a completed task belongs to is advanced next: its session and tasks come with
    the completion (one round trip less), unless this process wrote one of them since; runs
    of more than READ_ALONG_SESSION_TASKS tasks are read when they are asked for."""
    from opscore.storage.redis.runs import READ_ALONG_SESSION_TASKS

    store, calls = redis_counted

    def scripts() -> int:
        return calls("evalsha")

    await store.save_session(session("s1"))
    running = [task(f"t{i}", status=TaskStatus.RUNNING) for i in range(3)]
    await store.save_tasks([*running, task("t3")])
    await store.session_with_tasks("s1")  # Redis loads the scripts at their first use
    await store.update_task("t0", {"status": TaskStatus.COMPLETED})
    before = scripts()
    found, tasks = await store.session_with_tasks("s1")
    assert scripts() == before  # read along
    assert found is not None and found.session_id == "s1"
    assert [(t.task_id, t.status) for t in tasks] == [
        ("t0", TaskStatus.COMPLETED),
        ("t1", TaskStatus.RUNNING),
        ("t2", TaskStatus.RUNNING),
        ("t3", TaskStatus.PENDING),
    ]
    await store.session_with_tasks("s1")
    assert scripts() == before + 1  # used once

    await store.update_task("t1", {"status": TaskStatus.COMPLETED})
    await store.update_task("t3", {"status": TaskStatus.QUEUED})  # written since
    before = scripts()
    _, tasks = await store.session_with_tasks("s1")
    assert scripts() == before + 1  # asked Redis, and saw the write
    assert [t.status for t in tasks][1:4:2] == [TaskStatus.COMPLETED, TaskStatus.QUEUED]

    await store.save_session(session("big"))
    many = READ_ALONG_SESSION_TASKS + 1
    await store.save_tasks(
        [task(f"b{i}", session_id="big", status=TaskStatus.RUNNING) for i in range(many)]
    )
    await store.update_task("b0", {"status": TaskStatus.COMPLETED})
    before = scripts()
    _, tasks = await store.session_with_tasks("big")
    assert scripts() == before + 1 and len(tasks) == many


async def test_redis_loads_its_scripts_again_when_redis_forgot_them(redis_server) -> None:
    """As after a restart of Redis without persistence, or SCRIPT FLUSH: NOSCRIPT, then
    the script is loaded again and the call goes through."""
    import redis

    redis_server.flush()
    store = storage_from_url(redis_server.url)
    await store.open()
    admin = redis.Redis.from_url(redis_server.url)
    try:
        await store.save_tasks([task("t1")])
        admin.script_flush()
        moved = await store.update_task("t1", {"status": TaskStatus.QUEUED})
        assert moved is not None and moved.status == TaskStatus.QUEUED
        assert (await store.get_task("t1")).status == TaskStatus.QUEUED
    finally:
        admin.close()
        await store.close()
    with pytest.raises(StorageError, match="not open"):
        await store.get_task("t1")


async def test_redis_indexes_the_tasks_an_older_release_left_in_flight(redis_server) -> None:
    """An older release kept tasks in flight in a set without scores ('inflight'), and its
    replicas may still add to it during a rolling upgrade: the sweeps' read moves what it
    finds there into the scored index, so no task in flight goes unswept."""
    import redis

    redis_server.flush()
    store = storage_from_url(redis_server.url)
    await store.open()
    admin = redis.Redis.from_url(redis_server.url)
    soon = NOW + timedelta(seconds=5)
    try:
        await store.save_tasks([task("new", status=TaskStatus.RUNNING, deadline=soon)])
        for t in (
            task("old", status=TaskStatus.RUNNING, deadline=soon),
            task("old-later", status=TaskStatus.DISPATCHED, deadline=soon + timedelta(hours=1)),
            task("old-done", status=TaskStatus.COMPLETED),
        ):  # as the older release wrote them
            admin.set(f"opscore:task:{t.task_id}", t.model_dump_json())
            admin.sadd("opscore:inflight", t.task_id)
        admin.sadd("opscore:inflight", "old-gone")
        due = await store.inflight_tasks(due_by=soon)
        assert sorted(t.task_id for t in due) == ["new", "old"]
        assert admin.exists("opscore:inflight") == 0  # moved, once
        assert sorted(t.task_id for t in await store.inflight_tasks()) == [
            "new",
            "old",
            "old-later",
        ]
        assert sorted(t.task_id for t in await store.inflight_tasks(due_by=soon)) == ["new", "old"]
        # an entry a race with that move left behind (a task since settled, or gone) is read
        # once, then leaves the index (the script checks each is still settled, atomically)
        admin.zadd("opscore:inflight:due", {"old-done": 0, "old-gone": 0})
        assert sorted(t.task_id for t in await store.inflight_tasks(due_by=soon)) == ["new", "old"]
        assert admin.zrange("opscore:inflight:due", 0, -1) == [b"new", b"old", b"old-later"]
    finally:
        admin.close()
        await store.close()


def test_records_are_parsed_once_and_a_changed_record_afresh() -> None:
    from opscore.storage.parsed import ParsedRecords

    parsed = ParsedRecords(size=2)
    written = task("t1")
    raw = parsed.dump(written)
    assert parsed.load(TaskRun, raw) is written  # read back what this process wrote: no parse
    changed = raw.replace('"status":"pending"', '"status":"queued"')
    assert changed != raw
    assert parsed.load(TaskRun, changed).status == TaskStatus.QUEUED  # changed elsewhere
    assert parsed.load(TaskRun, changed) is parsed.load(TaskRun, changed)
    parsed.load(Session, session("s9").model_dump_json())
    assert parsed.load(TaskRun, raw) is not written  # least recently used went first


def test_a_record_in_many_versions_takes_one_place_in_the_parsed_records() -> None:
    """Each task goes through several versions in a run: keeping them all turned the cache
    over before a run read its own records back."""
    from opscore.storage.parsed import ParsedRecords

    parsed = ParsedRecords(size=3)
    records = [task(f"t{i}") for i in range(3)]
    raws = [parsed.dump(record) for record in records]
    newest = records[0]
    for attempt in range(1, 20):  # t0 changes many times; t1 and t2 must stay
        newest = task("t0", attempts=attempt)
        latest = parsed.dump(newest)
    assert parsed.load(TaskRun, raws[1]) is records[1]  # no parse: still kept
    assert parsed.load(TaskRun, raws[2]) is records[2]
    assert parsed.load(TaskRun, latest) is newest
    assert len(parsed._models) == 3 and len(parsed._newest) == 3
    old = parsed.load(TaskRun, raws[0])  # a superseded version is parsed again...
    assert old is not records[0] and old.attempts == 0
    assert parsed.load(TaskRun, latest) is newest  # ...and does not displace the newest
    parsed.dump(record("a1", "idle", 1))  # state reports pass through: history, never read
    assert parsed.load(TaskRun, latest) is newest and len(parsed._models) == 3


def test_the_parsed_records_are_bounded_in_bytes_too() -> None:
    from opscore.storage.parsed import ParsedRecords

    one = len(task("t0").model_dump_json())
    parsed = ParsedRecords(size=1000, max_bytes=int(one * 10.5))
    records = [task(f"t{i}") for i in range(30)]
    raws = [parsed.dump(r) for r in records]
    assert len(parsed._models) == 10 and parsed._bytes <= parsed.max_bytes
    assert parsed.load(TaskRun, raws[-1]) is records[-1]  # the newest ten stay
    assert parsed.load(TaskRun, raws[0]) is not records[0]  # the oldest went
    huge = task("big", result="x" * one * 2)  # above a tenth of the room: never kept
    assert parsed.load(TaskRun, parsed.dump(huge)) is not huge
    assert parsed.load(TaskRun, raws[-1]) is records[-1]
