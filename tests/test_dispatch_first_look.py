"""What a dispatch pass reads first: the queue alone, or the queue and the agents at once."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from opscore.dispatch.dispatcher import Dispatcher
from opscore.dispatch.hooks import DispatchHooks
from opscore.dispatch.transports import Transport
from opscore.dispatch.wakeup import Wakeup
from opscore.models import utcnow
from opscore.storage.memory import MemoryStorage
from tests.conftest import make_settings


class Recording(MemoryStorage):
    """The memory store, noting when each read of the pass starts and ends."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []

    async def dequeue_ready(self, now: Any, limit: int) -> Any:
        self.log.append("queue>")
        await asyncio.sleep(0)  # a shared store's round trip: others may start meanwhile
        entries = await super().dequeue_ready(now, limit)
        self.log.append("<queue")
        return entries

    async def available_agents(self, states: Any) -> Any:
        self.log.append("agents>")
        await asyncio.sleep(0)
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
