"""A step leased to a waiting dispatcher with the write that queues it (``Storage.set_claimant``:
``storage/redis/claims.py``, ``storage/postgres/base.py``'s ``queued_after``), on a real
redis-server and a real PostgreSQL, the stores that claim.

At idle, the step is the only ready entry: the completion's own script leases it and reads
the fleet after its write, so the dispatcher's pass reads neither before the hand-over. The
entry is then as a claimed one: out of reach of other claims, settled by ack or requeue, or
back for anyone when its lease runs out. Nothing is claimed for a dispatcher that is busy,
for a step with another entry ready before it, or for one not due yet.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from opscore.models import Agent, QueueEntry, TaskStatus, utcnow

from .test_storage_contract import (
    MoveOnReport,
    agent,
    record,
    running_then_next,
    session,
    task,
    then_queue_t2,
)


class Claimant:
    """A dispatcher as the store sees it: waiting for work (``wants``) or not, and handing
    tasks to idle agents."""

    available_states = ("idle",)

    def __init__(self, wants: bool = True) -> None:
        self.wants = wants
        self.taken: list[tuple[list[QueueEntry], list[Agent]]] = []

    def wants_claims(self) -> bool:
        return self.wants

    def take_claimed(self, entries: list[QueueEntry], fleet: list[Agent]) -> None:
        self.taken.append((entries, fleet))


@pytest.fixture(params=["redis", "postgresql"])
async def store(request, tmp_path):
    from opscore.storage import storage_from_url

    from .conftest import store_url

    opened = storage_from_url(store_url(request, request.param, tmp_path))
    await opened.open()
    yield opened
    await opened.close()


async def _complete_t1(store, then=None, before=None):
    """a1's idle report completes t1 and queues t2 with it (as the workflow room plans);
    ``before()`` is called just before the report."""
    await store.save_session(session("s1"))
    await running_then_next(store)
    plan = MoveOnReport(
        TaskStatus.COMPLETED, ["running"], release=True, then=then or then_queue_t2()
    )
    if before is not None:
        before()
    return await store.record_report(record("a1", "idle", 1), history_limit=5, plan=plan)


async def test_the_next_step_is_leased_to_a_waiting_dispatcher_with_the_fleet(store) -> None:
    claimant = Claimant()
    store.set_claimant(claimant)
    await store.save_agent(agent("a2", state="busy", active_tasks=["x"]))
    written = await _complete_t1(store)
    assert written.queued is not None and written.queued.status == TaskStatus.QUEUED
    ((entries, fleet),) = claimant.taken
    (entry,) = entries
    assert (entry.task_id, entry.priority, entry.read) == ("t2", 7, True)
    assert entry.task is not None and entry.task.status == TaskStatus.QUEUED
    assert entry.task.resolved_parameters == {"x": 1}
    # the agents as the completion left them (a1 idle, its slot freed by it): every one
    # (Redis), or those in the states the claimant hands tasks to (PostgreSQL)
    by_id = {a.agent_id: a for a in fleet}
    assert {"a1"} <= set(by_id) <= {"a1", "a2"}
    assert by_id["a1"].active_tasks == [] and by_id["a1"].state == "idle"
    assert "a2" not in by_id or by_id["a2"].active_tasks == ["x"]
    # leased: no other claim gets it; it still counts as waiting to be handed over
    now = utcnow()
    assert await store.dequeue_ready(now, 10) == []
    assert await store.oldest_ready_at(now) is not None
    await store.ack(["t2"])
    assert await store.queue_depth() == 0 and await store.oldest_ready_at(now) is None


async def test_a_claimed_entry_put_back_or_left_goes_to_the_next_claim(store) -> None:
    claimant = Claimant()
    store.set_claimant(claimant)
    await _complete_t1(store)
    ((entries, _),) = claimant.taken
    await store.requeue(entries)  # the pass found no agent for it
    (again,) = await store.dequeue_ready(utcnow(), 10)
    assert (again.task_id, again.priority, again.seq) == ("t2", 7, entries[0].seq)
    # left unsettled (the replica died holding it): back once its lease has run out
    assert await store.dequeue_ready(utcnow(), 10) == []
    (late,) = await store.dequeue_ready(utcnow() + timedelta(seconds=31), 10)
    assert late.task_id == "t2"


async def test_nothing_is_claimed_with_another_entry_ready_and_the_order_holds(store) -> None:
    claimant = Claimant()
    store.set_claimant(claimant)
    await store.save_tasks([task("t9", status=TaskStatus.QUEUED, priority=7)])
    await store.enqueue("t9", priority=7, ready_at=utcnow())
    await _complete_t1(store)
    assert claimant.taken == []
    claimed = await store.dequeue_ready(utcnow(), 10)
    assert [e.task_id for e in claimed] == ["t9", "t2"]  # first in, first out


async def test_nothing_is_claimed_for_a_busy_dispatcher(store) -> None:
    busy = Claimant(wants=False)
    store.set_claimant(busy)
    await _complete_t1(store)
    assert busy.taken == []
    (entry,) = await store.dequeue_ready(utcnow(), 10)
    assert entry.task_id == "t2"


async def test_a_step_not_due_yet_is_not_claimed(store) -> None:
    waiting = Claimant()
    store.set_claimant(waiting)
    await _complete_t1(store, then=then_queue_t2(ready_in=60))
    assert waiting.taken == []
    assert await store.dequeue_ready(utcnow(), 10) == []
    assert await store.next_ready_at(utcnow()) is not None


async def test_a_runs_one_first_step_is_leased_as_the_run_starts(store) -> None:
    """The run's start (save_run) queues its first step in its own script: leased there too,
    with the fleet; a run that starts with two steps queued leaves both to the claims."""
    from opscore.models import SessionStatus

    claimant = Claimant()
    store.set_claimant(claimant)
    await store.save_agent(agent("a1", state="idle"))
    first = task("t1", status=TaskStatus.QUEUED, ready_at=utcnow(), priority=3)
    later = task("t2", status=TaskStatus.PENDING, depends_on=["t1"])
    running = session("s1", status=SessionStatus.RUNNING)
    await store.save_run(running, iter([first, later]), queued=["t1"])
    ((entries, fleet),) = claimant.taken
    assert [(e.task_id, e.priority) for e in entries] == [("t1", 3)]
    assert [a.agent_id for a in fleet] == ["a1"]
    assert await store.dequeue_ready(utcnow(), 10) == []
    assert (await store.get_session("s1")).status == SessionStatus.RUNNING
    assert (await store.get_task("t2")).status == TaskStatus.PENDING  # written all the same

    claimant.taken.clear()
    both = [task(f"u{i}", session_id="s2", status=TaskStatus.QUEUED) for i in (1, 2)]
    await store.save_run(session("s2", status=SessionStatus.RUNNING), both, queued=["u1", "u2"])
    assert claimant.taken == []
    assert [e.task_id for e in await store.dequeue_ready(utcnow(), 10)] == ["u1", "u2"]


async def test_a_claim_brings_the_row_its_steps_completion_writes_along(store) -> None:
    """Replica A started the run; this one completes its first step and claims the next,
    whose completion ends the run. It has never seen the run's session: the claim reads it
    along (as a claim with other replicas up does), so the report that completes that step
    need not read it first (a round trip), and ends the run in its write."""
    from opscore.storage import storage_from_url
    from opscore.storage.seen import UNSEEN

    from .test_storage_contract import carried_run

    other = storage_from_url(store.url)
    await other.open()
    try:
        await store.save_agent(agent("a1"))
        await store.record_state(record("a1", "idle", 0), history_limit=5)
        (first, plan), (second, last_plan) = await carried_run(other)
        (claimed,) = await store.dequeue_ready(utcnow(), 10)
        assert claimed.task_id == first
        start = {"status": TaskStatus.DISPATCHED, "agent_id": "a1"}
        assert await store.update_task(first, start, expect=["queued"], claim_slot_of="a1")
        claimant = Claimant()
        store.set_claimant(claimant)
        report = record("a1", "idle", 1, opscore_task_id=first)
        await store.record_report(report, history_limit=5, plan=plan)
        ((entries, _),) = claimant.taken
        assert [e.task_id for e in entries] == [second]
        # in its sight now: the report that completes the step reads no row first
        session_key = store.k("session", "s1") if hasattr(store, "k") else "session:s1"
        assert store._seen.get(session_key) not in (UNSEEN, None)
        await store.update_task(second, start, expect=["queued"], claim_slot_of="a1")
        report = record("a1", "idle", 2, opscore_task_id=second)
        written = await store.record_report(report, history_limit=5, plan=last_plan)
        assert written.ended is not None
    finally:
        await other.close()
