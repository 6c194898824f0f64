"""Redis's claims (``storage/redis/claims.py``): what they cost Redis, and the write that
claims on Redis only (a completion the hand-over's answer carries). What a claim does, on
every store that claims, is in ``test_store_claims.py``."""

from __future__ import annotations

from opscore.models import TaskStatus, utcnow
from opscore.storage.report_and_task import TaskUpdate

from .test_storage_contract import (
    agent,
    running_then_next,
    session,
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


async def test_a_claim_reads_along_the_row_its_completion_will_write(
    redis_counted, redis_server
) -> None:
    """Replica A started the run; B completes its first step and claims the next, whose
    completion ends the run. B has never seen the run's session: the claim reads it along
    (as a claim with other replicas up does), so that completion is one script too."""
    from opscore.storage import storage_from_url
    from opscore.storage.seen import UNSEEN

    from .test_storage_contract import carried_run, record

    b, calls = redis_counted
    a = storage_from_url(redis_server.url)
    await a.open()
    try:
        await b.save_agent(agent("a1"))
        await b.record_state(record("a1", "idle", 0), history_limit=5)
        (first, plan), (second, last_plan) = await carried_run(a)
        (claimed,) = await b.dequeue_ready(utcnow(), 10)  # alone: no row read along
        assert claimed.task_id == first
        start = {"status": TaskStatus.DISPATCHED, "agent_id": "a1"}
        assert await b.update_task(first, start, expect=["queued"], claim_slot_of="a1")
        claimant = Claimant()
        b.set_claimant(claimant)
        session_key = b.k("session", "s1")
        assert b._seen.get(session_key) is UNSEEN
        report = record("a1", "idle", 1, opscore_task_id=first)
        await b.record_report(report, history_limit=5, plan=plan)
        ((entries, _),) = claimant.taken
        assert [e.task_id for e in entries] == [second]
        assert b._seen.get(session_key) is not UNSEEN  # read along with the claim
        # so the step's completion, which ends the run, is one script
        await b.update_task(second, start, expect=["queued"], claim_slot_of="a1")
        before = {name: calls(name) for name in ("evalsha", "get", "mget")}
        report = record("a1", "idle", 2, opscore_task_id=second)
        written = await b.record_report(report, history_limit=5, plan=last_plan)
        assert written.ended is not None
        assert {name: calls(name) - n for name, n in before.items()} == {
            "evalsha": 1,
            "get": 0,
            "mget": 1,
        }
    finally:
        await a.close()
