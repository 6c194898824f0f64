"""What a dispatch pass reads first: the queue alone, or the queue and the agents at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from opscore.dispatch.dispatcher import Dispatcher
from opscore.dispatch.hooks import DispatchHooks
from opscore.dispatch.transports import Transport
from opscore.dispatch.wakeup import Wakeup
from opscore.models import Agent, utcnow
from opscore.storage.memory import MemoryStorage
from tests.conftest import make_settings


class Recording(MemoryStorage):
    """The memory store, noting when each read of the pass starts and ends."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        self.while_reading_agents: Callable[[], None] = lambda: None

    async def dequeue_ready(self, now: Any, limit: int, **kwargs: Any) -> Any:
        self.log.append("queue>")
        await asyncio.sleep(0)  # a shared store's round trip: others may start meanwhile
        entries = await super().dequeue_ready(now, limit, **kwargs)
        self.log.append("<queue")
        return entries

    async def available_agents(self, states: Any) -> Any:
        self.log.append("agents>")
        await asyncio.sleep(0)
        self.while_reading_agents()
        agents = await super().available_agents(states)
        self.log.append("<agents")
        return agents


def dispatcher(storage: Recording, wakeup: Wakeup) -> Dispatcher:
    # no agent is registered: a pass only reads, then puts the queue back as it was
    return Dispatcher(
        storage,
        make_settings(),
        cast(Transport, object()),
        cast(DispatchHooks, object()),
        wakeup=wakeup,
        available_states={"idle"},
    )


async def test_work_this_process_queued_is_read_with_the_agents_in_one_turn() -> None:
    storage, wakeup = Recording(), Wakeup()
    now = utcnow()
    await storage.enqueue("t1", priority=0, ready_at=now)
    wakeup.set(capacity=False, queued=True)
    assert await dispatcher(storage, wakeup).dispatch_ready(now) == 0
    assert storage.log[:2] == ["queue>", "agents>"]  # both asked before either answered
    assert not wakeup.queued  # the hint is used once
    assert [e.task_id for e in await storage.dequeue_ready(now, 5)] == ["t1"]  # put back


async def test_a_pass_without_queued_work_reads_the_agents_only_when_the_queue_has_some() -> None:
    storage, wakeup = Recording(), Wakeup()
    now = utcnow()
    wakeup.set()  # an idle report, say: a slot may be free, nothing was queued here
    await dispatcher(storage, wakeup).dispatch_ready(now)
    assert storage.log == ["queue>", "<queue"]  # an empty queue: no agent scan
    await storage.enqueue("t1", priority=0, ready_at=now)
    storage.log.clear()
    await dispatcher(storage, wakeup).dispatch_ready(now)
    assert storage.log[:4] == ["queue>", "<queue", "agents>", "<agents"]


async def test_a_slot_freed_while_a_pass_reads_calls_for_another_look() -> None:
    """The pass read the agents before the slot was freed, found none free, and put the
    work back: the freed slot must still wake the next pass (it was lost, and the work
    waited for the dispatch interval; a 1 ms alarm on put-back work hid it)."""
    storage, wakeup = Recording(), Wakeup()
    now = utcnow()
    busy = Agent(
        agent_id="a1",
        agent_name="a1",
        state="idle",
        active_tasks=["other"],
        max_concurrency=1,
        last_seen=now,
        registered_at=now,
        updated_at=now,
    )
    await storage.create_agent(busy)
    await storage.enqueue("t1", priority=0, ready_at=now)
    storage.while_reading_agents = wakeup.set  # an idle report frees a slot meanwhile
    wakeup.set(capacity=False, queued=True)
    passes = dispatcher(storage, wakeup)
    assert await passes.dispatch_ready(now) == 0  # the agents it read were all busy
    assert wakeup.capacity  # so the next pass looks at them again
    storage.log.clear()
    await passes.dispatch_ready(now)
    assert "agents>" in storage.log


async def test_a_pass_reads_at_most_a_batch_of_entries_that_wait_for_a_busy_capability() -> None:
    """Entries that no agent takes now (their capability is busy) count towards the pass's
    batch: a backlog longer than that is read a batch per pass, not whole at every pass."""
    from opscore.dispatch.dispatcher import BATCH
    from opscore.models import TaskStatus

    from .test_storage_contract import agent, task

    storage, wakeup = Recording(), Wakeup()
    now = utcnow()
    await storage.save_agent(agent("free", state="idle", capabilities=["work"]))
    backlog = BATCH + 100
    for i in range(backlog):
        queued = task(f"t{i:04d}", status=TaskStatus.QUEUED, agent_capability="rare")
        await storage.save_tasks([queued])
        await storage.enqueue(queued.task_id, priority=0, ready_at=now)
    read = 0
    dequeue = storage.dequeue_ready

    async def counted(when: Any, limit: int, **kwargs: Any) -> Any:
        nonlocal read
        entries = await dequeue(when, limit, **kwargs)
        read += len(entries)
        return entries

    storage.dequeue_ready = counted  # type: ignore[method-assign]
    assert await dispatcher(storage, wakeup).dispatch_ready(now) == 0
    assert read == BATCH
    assert await storage.queue_depth() == backlog  # every entry put back


class Claims(MemoryStorage):
    """The memory store, noting each claim's limit and how many entries it got."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[tuple[int, int]] = []

    async def dequeue_ready(self, now: Any, limit: int, **kwargs: Any) -> Any:
        entries = await super().dequeue_ready(now, limit, **kwargs)
        self.claims.append((limit, len(entries)))
        return entries


async def _queue(storage: MemoryStorage, task_id: str, now: Any) -> None:
    from opscore.models import TaskStatus

    from .test_storage_contract import task

    await storage.save_tasks([task(task_id, status=TaskStatus.QUEUED)])
    await storage.enqueue(task_id, priority=0, ready_at=now)


def _starting(storage: MemoryStorage, wakeup: Wakeup) -> Dispatcher:
    from .test_dispatch_together import Accepting, Starts

    return Dispatcher(
        storage,
        make_settings(),
        cast(Transport, Accepting()),
        cast(DispatchHooks, Starts(storage)),
        wakeup=wakeup,
        available_states={"idle"},
    )


async def _after_one_step() -> tuple[Claims, Wakeup, Dispatcher, Any]:
    """Three idle agents, one with the task of a first pass, which read nothing before: it
    claimed one entry, then as many as the slots left free (two), and found the queue empty."""
    from .test_storage_contract import agent

    storage, wakeup = Claims(), Wakeup()
    now = utcnow()
    for i in range(3):
        await storage.create_agent(agent(f"a{i}", state="idle"))
    passes = _starting(storage, wakeup)
    await _queue(storage, "t0", now)
    wakeup.set(queued=True)
    assert await passes.dispatch_ready(now) == 1
    assert storage.claims == [(1, 1), (2, 0)]
    storage.claims.clear()
    return storage, wakeup, passes, now


async def test_a_step_on_an_idle_service_is_claimed_in_one_look() -> None:
    """The first look claims as many entries as the last pass left slots free: a pass that
    gets fewer knows the queue is empty, without a second claim (one store call, a round trip
    on Redis and PostgreSQL, per step of a run on an idle service)."""
    storage, wakeup, passes, now = await _after_one_step()
    await _queue(storage, "t1", now)  # the run's next step, say
    wakeup.set(queued=True)
    assert await passes.dispatch_ready(now) == 1
    assert storage.claims == [(2, 1)]  # two slots were left free: one look says it all
    await asyncio.sleep(0.05)  # the hand-overs' tasks end


async def test_a_first_look_that_claims_more_than_the_agents_take_puts_them_back() -> None:
    """Slots the last pass left free may be taken since (by another replica): the entries
    claimed for them go back, in their order, and the next look claims one."""
    storage, wakeup, passes, now = await _after_one_step()
    for i in (1, 2):  # taken elsewhere meanwhile
        await storage.update_agent(f"a{i}", {"active_tasks": ["elsewhere"]})
    for name in ("t1", "t2", "t3"):
        await _queue(storage, name, now)
    wakeup.set(queued=True)
    assert await passes.dispatch_ready(now) == 0
    assert storage.claims == [(2, 2)]
    back = await storage.dequeue_ready(now, 5)
    assert [e.task_id for e in back] == ["t1", "t2", "t3"]
    await storage.requeue(back)
    storage.claims.clear()
    wakeup.set(queued=True)
    await passes.dispatch_ready(now)
    assert storage.claims[0] == (1, 1)  # every slot was taken at the last look
    await asyncio.sleep(0.05)
