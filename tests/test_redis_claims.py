"""Redis's claims (``storage/redis/claims.py``): what they cost Redis, and the writes that
claim on Redis only (the hand-over's answer, a run as it starts). What a claim does, on
every store that claims, is in ``test_store_claims.py``."""

from __future__ import annotations

from opscore.models import TaskStatus, utcnow
from opscore.storage.report_and_task import TaskUpdate

from .test_storage_contract import (
    agent,
    running_then_next,
    session,
    task,
    then_queue_t2,
)
from .test_store_claims import Claimant, _complete_t1


async def test_a_claim_is_part_of_the_completions_one_script(
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
    ((entries, _),) = claimant.taken
    assert [e.task_id for e in entries] == ["t2"]


async def test_a_busy_dispatcher_costs_redis_no_command(redis_counted) -> None:
    store, calls = redis_counted
    busy = Claimant(wants=False)
    store.set_claimant(busy)
    zcards: list[int] = []
    await _complete_t1(store, before=lambda: zcards.append(calls("zcard")))
    assert busy.taken == [] and calls("zcard") == zcards[0]  # not even asked
    (entry,) = await store.dequeue_ready(utcnow(), 10)
    assert entry.task_id == "t2"


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
