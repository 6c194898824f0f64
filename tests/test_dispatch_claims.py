"""A pass on entries leased to the dispatcher as they were queued (``dispatch/first_look.py``):
it reads neither the queue nor the agents, unless what it holds cannot be trusted alone.

The stores' side (the write that queues a step leases it) is tested in
``test_store_claims.py``; here the entries are leased from the memory store by hand and
given to the dispatcher as a store would (``FirstLook.take_claimed``), and a whole run on
a shared store shows that its steps are handed over without a first look.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import httpx
import pytest

from opscore.dispatch.dispatcher import Dispatcher
from opscore.dispatch.wakeup import Wakeup
from opscore.models import TaskStatus, utcnow

from .conftest import KEY, make_settings, store_url
from .test_dispatch_first_look import Recording
from .test_dispatch_together import Starts
from .test_storage_contract import agent, task


def _dispatcher(storage: Recording, wakeup: Wakeup) -> Dispatcher:
    from .test_dispatch_first_look import _starting

    return _starting(storage, wakeup)


async def _leased(storage: Recording, *task_ids: str) -> list[Any]:
    """The tasks queued and leased, as a completion's script leases its next step."""
    now = utcnow()
    for task_id in task_ids:
        await storage.save_tasks([task(task_id, status=TaskStatus.QUEUED)])
        await storage.enqueue(task_id, priority=0, ready_at=now)
    entries = await storage.dequeue_ready(now, len(task_ids))
    storage.log.clear()
    return entries


async def test_a_pass_on_a_held_entry_reads_nothing_and_starts_it_acknowledged() -> None:
    storage, wakeup = Recording(), Wakeup()
    await storage.create_agent(agent("a1", state="idle"))
    passes = _dispatcher(storage, wakeup)
    entries = await _leased(storage, "t1")
    fleet = await storage.available_agents({"idle"})
    storage.log.clear()
    passes.looks.take_claimed(entries, fleet)
    # the completion that queued it tells of it: that news calls for no read of the queue
    wakeup.set(capacity=False, queued=True, task_id="t1")
    assert not wakeup.queued
    assert await passes.dispatch_ready(utcnow()) == 1
    assert storage.log == []  # neither the queue nor the agents were read
    hooks = cast(Starts, passes.hooks)
    assert hooks.log == ["t1>a", "<t1"]  # its only entry: acknowledged with its start
    assert (await storage.get_task("t1")).status == TaskStatus.DISPATCHED
    assert await storage.queue_depth() == 0
    await asyncio.sleep(0.05)  # the hand-over's task ends


async def test_a_held_entry_no_agent_of_the_fleet_read_takes_goes_back_for_a_fresh_look() -> None:
    """The fleet read with the claim may be older than news this pass already took (a slot
    freed by a write that Redis ran after the claim's): work left waiting on it goes back,
    and the next pass looks at the agents afresh."""
    storage, wakeup = Recording(), Wakeup()
    await storage.create_agent(agent("a1", state="idle"))
    passes = _dispatcher(storage, wakeup)
    entries = await _leased(storage, "t1")
    stale = [agent("a1", state="idle", active_tasks=["other"])]  # busy, as read then
    passes.looks.take_claimed(entries, stale)
    await wakeup.woken_within(0)  # the wakeup it gave is this pass's
    assert await passes.dispatch_ready(utcnow()) == 0
    assert storage.log == []
    assert await storage.queue_depth() == 1  # put back
    assert await wakeup.woken_within(0)  # and another pass called for
    assert await passes.dispatch_ready(utcnow()) == 1  # which reads, and finds a1 free
    assert storage.log[:2] == ["queue>", "<queue"]
    await asyncio.sleep(0.05)


async def test_work_queued_since_the_claim_is_claimed_along_with_what_is_held() -> None:
    """This process queued another task after the claim, and the pass took that news: the
    pass claims the queue's head too, or the task would wait for the next wakeup."""
    storage, wakeup = Recording(), Wakeup()
    for name in ("a1", "a2"):
        await storage.create_agent(agent(name, state="idle"))
    passes = _dispatcher(storage, wakeup)
    entries = await _leased(storage, "t1")
    passes.looks.take_claimed(entries, await storage.available_agents({"idle"}))
    await storage.save_tasks([task("t2", status=TaskStatus.QUEUED)])
    await storage.enqueue("t2", priority=0, ready_at=utcnow())
    wakeup.set(capacity=False, queued=True, task_id="t2")  # news of another task
    wakeup.set(capacity=False, queued=True, task_id="t1")  # the held one's, late
    assert wakeup.queued
    storage.log.clear()
    assert await passes.dispatch_ready(utcnow()) == 2
    assert storage.log == ["queue>", "<queue"]  # the queue, not the agents
    assert not wakeup.queued
    await asyncio.sleep(0.05)


async def test_claims_are_wanted_between_passes_and_given_back_at_stop() -> None:
    storage, wakeup = Recording(), Wakeup()
    passes = _dispatcher(storage, wakeup)
    assert not passes.looks.wants_claims()  # not running
    passes.start()
    try:
        for _ in range(100):  # its first pass finds nothing, then it waits
            if passes.looks.wants_claims():
                break
            await asyncio.sleep(0.01)
        assert passes.looks.wants_claims()
        with passes.looks.passing():  # a pass may have looked at the queue already
            assert not passes.looks.wants_claims()
        entries = await _leased(storage, "t1")
        # held, but its pass has not come yet when the dispatcher stops
        passes.looks._held += entries
    finally:
        await passes.stop()
    assert not passes.looks.wants_claims()
    assert [e.task_id for e in await storage.dequeue_ready(utcnow(), 5)] == ["t1"]


def test_news_of_held_steps_kept_is_bounded() -> None:
    from opscore.dispatch.wakeup import CLAIMS_KEPT

    wakeup = Wakeup()
    wakeup.claimed([f"t{i}" for i in range(CLAIMS_KEPT + 10)])
    wakeup.set(queued=True, task_id="t0")  # forgotten: counted as news of the queue
    assert wakeup.queued
    wakeup.queued = False
    wakeup.set(queued=True, task_id=f"t{CLAIMS_KEPT + 9}")
    assert not wakeup.queued


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_a_runs_steps_are_leased_as_they_are_queued(backend, request, tmp_path) -> None:
    """A real replica on a shared store and agents that behave as AgentKit's, runs one at a
    time: every step is handed over once, every run completes, and steps are leased to the
    dispatcher with the write that queues them: the run's start, then each report that
    completes a step (all of them on an idle machine; fewer on a loaded one, where a pass
    may still be under way when the write is made, and the step is claimed as before)."""
    from opscore.api import create_app

    from .fakes import FakeFleet
    from .servers import ServerThread
    from .workflow_helpers import create, run, settle, template
    from .workflow_helpers import task as step

    url = store_url(request, backend, tmp_path)
    app = create_app(make_settings(storage_url=url, access_log=False))
    server = ServerThread(app).start()
    fleet = FakeFleet(server.url, KEY).start()
    looks = app.state.services.dispatcher.looks
    taken: list[str] = []
    take = looks.take_claimed

    def noted(entries: list[Any], agents: list[Any]) -> None:
        taken.extend(entry.task_id for entry in entries)
        take(entries, agents)

    looks.take_claimed = noted
    runs = 8
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        ) as client:
            fleet.add("a1")
            fleet.add("a2")
            chain = (step("s1"), step("s2", depends_on=["s1"]), step("s3", depends_on=["s2"]))
            create(client, template("three", *chain))
            for _ in range(runs):
                assert settle(client, run(client, "three"))["status"] == "completed"
    finally:
        fleet.stop()
        server.stop()
    assert sum(fleet.per_agent.values()) == 3 * runs  # each step handed over once
    assert 1 <= len(taken) <= 3 * runs and len(set(taken)) == len(taken)
