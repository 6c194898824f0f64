"""A dispatch pass reads free slots and candidates from the agents as it asks
(``dispatch/slots.py``): what it sees is what building them for the whole fleet gave, without
the work in proportion to the fleet."""

from __future__ import annotations

from opscore.dispatch.dispatcher import BATCH
from opscore.dispatch.slots import FreeSlots, PassFleet
from opscore.dispatch.wakeup import Wakeup
from opscore.models import TaskStatus, utcnow
from opscore.storage.memory import MemoryStorage
from tests.test_dispatch_first_look import _starting
from tests.test_storage_contract import agent, task


def test_free_slots_are_exact_for_a_fleet_with_fewer_than_enough() -> None:
    agents = [
        agent("a", max_concurrency=2),
        agent("b", max_concurrency=1, active_tasks=["t0"]),
        agent("c", max_concurrency=3, active_tasks=["t1"]),
    ]
    free = FreeSlots(agents, None, utcnow(), enough=10)
    assert free.total == 4 and [free.of(a) for a in agents] == [2, 0, 2]
    free.take(agents[0])
    assert free.total == 3 and free.of(agents[0]) == 1
    free.give_back(agents[0])
    free.exhaust(agents[2])  # another replica took its slots
    assert free.total == 2 and free.of(agents[2]) == 0


def test_free_slots_read_only_enough_agents_up_front_and_the_rest_when_asked() -> None:
    agents = [agent(f"a{i}") for i in range(10_000)]
    looked: list[str] = []

    def left(a, now) -> bool:  # called once for each agent read (with replicas up)
        looked.append(a.agent_id)
        return a.agent_id == "a9999"

    free = FreeSlots(agents, left, utcnow(), enough=BATCH + 1)
    assert len(looked) == BATCH + 1 and free.total == BATCH + 1
    for a in agents[:BATCH]:  # a whole pass's worth taken: slots are still counted free
        free.take(a)
    assert free.total == 1
    assert free.of(agents[5000]) == 1 and free.total == 2  # read when asked, and counted
    assert free.of(agents[-1]) == 0 and free.total == 2  # left to another replica
    assert len(looked) == BATCH + 3


def test_a_pass_finds_candidates_by_capability_in_the_fleets_order_once() -> None:
    agents = [
        agent("x", capabilities=["sum"]),
        agent("y", capabilities=["draw"]),
        agent("z", capabilities=["sum", "draw"]),
    ]
    fleet = PassFleet(agents, FreeSlots(agents, None, utcnow(), enough=10))
    summing = fleet.candidates(task("t1", agent_capability="sum"))
    assert [a.agent_id for a in summing] == ["x", "z"]
    assert fleet.candidates(task("t2", agent_capability="sum")) is summing  # kept for the pass
    assert [a.agent_id for a in fleet.candidates(task("t3", target_agent_id="y"))] == ["y"]
    assert fleet.candidates(task("t4", target_agent_id="gone")) == []
    assert fleet.candidates(task("t5")) is agents


async def test_a_fleet_larger_than_a_batch_gets_a_batch_a_pass_until_all_are_handed_over() -> None:
    storage = MemoryStorage()
    now = utcnow()
    count = BATCH + 44
    for i in range(count):
        await storage.create_agent(agent(f"a{i:03d}", state="idle"))
        await storage.save_tasks([task(f"t{i:03d}", status=TaskStatus.QUEUED)])
        await storage.enqueue(f"t{i:03d}", priority=0, ready_at=now)
    wakeup = Wakeup()
    wakeup.set(queued=True)
    dispatcher = _starting(storage, wakeup)
    try:
        assert await dispatcher.dispatch_ready(now) == BATCH
        assert await dispatcher.dispatch_ready(now) == count - BATCH
        assert await dispatcher.dispatch_ready(now) == 0
    finally:
        await dispatcher.deliveries.stop()
    agents = {(await storage.get_task(f"t{i:03d}")).agent_id for i in range(count)}
    assert len(agents) == count  # one task each: no slot taken twice
    assert await storage.queue_depth() == 0
