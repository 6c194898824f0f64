"""A completion's next step leased to a waiting dispatcher with the write that queues it
(``storage/redis/claims.py``, ``Storage.set_claimant``), on a real redis-server.

At idle, the step is the only ready entry: the completion's own script leases it and reads
the fleet after its write, so the dispatcher's pass reads neither before the hand-over. The
entry is then as a claimed one: out of reach of other claims, settled by ack or requeue, or
back for anyone when its lease runs out. Nothing is claimed for a dispatcher that is busy,
for a step with another entry ready before it, or for one not due yet.
"""

from __future__ import annotations

from datetime import timedelta

from opscore.models import Agent, QueueEntry, TaskStatus, utcnow
from opscore.storage.report_and_task import TaskUpdate

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
    """A dispatcher as the store sees it: waiting for work (``wants``) or not."""

    def __init__(self, wants: bool = True) -> None:
        self.wants = wants
        self.taken: list[tuple[list[QueueEntry], list[Agent]]] = []

    def wants_claims(self) -> bool:
        return self.wants

    def take_claimed(self, entries: list[QueueEntry], fleet: list[Agent]) -> None:
        self.taken.append((entries, fleet))


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


async def test_the_next_step_is_leased_to_a_waiting_dispatcher_with_the_fleet(
    redis_counted,
) -> None:
    store, calls = redis_counted
    claimant = Claimant()
    store.set_claimant(claimant)
    await store.save_agent(agent("a2", state="busy", active_tasks=["x"]))
    names = ("evalsha", "zcard", "smembers", "mget")
    before: dict[str, int] = {}
    written = await _complete_t1(store, before=lambda: before.update({n: calls(n) for n in names}))
    assert written.queued is not None and written.queued.status == TaskStatus.QUEUED
    # the completion's one script: the step queued, leased, and the fleet read after it
    assert {n: calls(n) - before[n] for n in names} == {
        "evalsha": 1,
        "zcard": 1,
        "smembers": 1,
        "mget": 2,  # the records compared, and the fleet's
    }
    ((entries, fleet),) = claimant.taken
    (entry,) = entries
    assert (entry.task_id, entry.priority, entry.read) == ("t2", 7, True)
    assert entry.task is not None and entry.task.status == TaskStatus.QUEUED
    assert entry.task.resolved_parameters == {"x": 1}
    # every agent, as written by the completion (a1's slot freed by it)
    by_id = {a.agent_id: a for a in fleet}
    assert set(by_id) == {"a1", "a2"}
    assert by_id["a1"].active_tasks == [] and by_id["a1"].state == "idle"
    assert by_id["a2"].active_tasks == ["x"]
    # leased: no other claim gets it; it still counts as waiting to be handed over
    now = utcnow()
    assert await store.dequeue_ready(now, 10) == []
    assert await store.oldest_ready_at(now) is not None
    await store.ack(["t2"])
    assert await store.queue_depth() == 0 and await store.oldest_ready_at(now) is None


async def test_a_claimed_entry_put_back_or_left_goes_to_the_next_claim(redis_counted) -> None:
    store, _ = redis_counted
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


async def test_nothing_is_claimed_with_another_entry_ready_and_the_order_holds(
    redis_counted,
) -> None:
    store, _ = redis_counted
    claimant = Claimant()
    store.set_claimant(claimant)
    await store.save_tasks([task("t9", status=TaskStatus.QUEUED, priority=7)])
    await store.enqueue("t9", priority=7, ready_at=utcnow())
    await _complete_t1(store)
    assert claimant.taken == []
    claimed = await store.dequeue_ready(utcnow(), 10)
    assert [e.task_id for e in claimed] == ["t9", "t2"]  # first in, first out


async def test_nothing_is_claimed_for_a_busy_dispatcher(redis_counted) -> None:
    store, calls = redis_counted
    busy = Claimant(wants=False)
    store.set_claimant(busy)
    zcards: list[int] = []
    await _complete_t1(store, before=lambda: zcards.append(calls("zcard")))
    assert busy.taken == [] and calls("zcard") == zcards[0]  # not even asked
    (entry,) = await store.dequeue_ready(utcnow(), 10)
    assert entry.task_id == "t2"


async def test_a_step_not_due_yet_is_not_claimed(redis_counted) -> None:
    store, _ = redis_counted
    waiting = Claimant()
    store.set_claimant(waiting)
    await _complete_t1(store, then=then_queue_t2(ready_in=60))
    assert waiting.taken == []
    assert await store.dequeue_ready(utcnow(), 10) == []
    assert await store.next_ready_at(utcnow()) is not None


async def test_a_completion_written_with_the_hand_overs_answer_claims_too(redis_counted) -> None:
    """A completion that the agent's answer to the hand-over carries (update_task_and_next)
    goes through the same script."""
    store, _ = redis_counted
    claimant = Claimant()
    store.set_claimant(claimant)
    await store.save_session(session("s1"))
    await running_then_next(store)
    update = TaskUpdate(
        {"status": TaskStatus.COMPLETED}, ["running"], release_slot_of="a1", then=then_queue_t2()
    )
    written = await store.update_task_and_next("t1", update)
    assert written.queued is not None
    ((entries, fleet),) = claimant.taken
    assert [e.task_id for e in entries] == ["t2"] and [a.agent_id for a in fleet] == ["a1"]
    store.set_claimant(None)  # no claimant: nothing claimed
    await store.requeue(entries)
    assert [e.task_id for e in await store.dequeue_ready(utcnow(), 10)] == ["t2"]


async def test_a_runs_one_first_step_is_leased_as_the_run_starts(redis_counted) -> None:
    """The run's start (save_run) queues its first step in its own script: leased there too,
    with the fleet; a run that starts with two steps queued leaves both to the claims."""
    from opscore.models import SessionStatus

    store, _ = redis_counted
    claimant = Claimant()
    store.set_claimant(claimant)
    await store.save_agent(agent("a1"))
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
