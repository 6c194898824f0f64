"""How the dispatcher sleeps between passes: woken soon, it asks the store nothing; left alone,
it asks when the next delayed entry is due and wakes for it."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import cast

from opscore.dispatch.dispatcher import Dispatcher
from opscore.dispatch.hooks import DispatchHooks
from opscore.dispatch.transports import Transport
from opscore.dispatch.wakeup import NEWS_WITHIN, Wakeup
from opscore.models import utcnow
from opscore.storage.memory import MemoryStorage
from tests.conftest import make_settings
from tests.counted_store import counted


def dispatcher(storage: MemoryStorage, wakeup: Wakeup, interval: float = 30.0) -> Dispatcher:
    return Dispatcher(
        storage,
        make_settings(dispatch_interval=interval),
        cast(Transport, object()),
        cast(DispatchHooks, object()),
        wakeup=wakeup,
        available_states={"idle"},
    )


async def test_a_pass_woken_at_once_does_not_ask_when_the_next_delayed_entry_is_due() -> None:
    """Under load, and at each step's end of a run, the next pass is woken within
    ``NEWS_WITHIN``: it starts without a store call (a round trip on a shared store)."""
    storage, wakeup = MemoryStorage(), Wakeup()
    calls = counted(storage)
    d = dispatcher(storage, wakeup)
    for _ in range(3):
        wakeup.set()
        await asyncio.wait_for(d._sleep(), timeout=10)
        assert not wakeup._event.is_set()  # cleared for the pass it starts
    assert calls["next_ready_at"] == 0


async def test_a_pass_woken_after_the_grace_still_wakes_at_once() -> None:
    storage, wakeup = MemoryStorage(), Wakeup()
    calls = counted(storage)
    d = dispatcher(storage, wakeup)
    sleeping = asyncio.create_task(d._sleep())
    # not woken within the grace (a machine twice as slow still passes it: wait for the call)
    for _ in range(1000):
        if calls["next_ready_at"]:
            break
        await asyncio.sleep(0.01)
    assert calls["next_ready_at"] == 1
    started = time.monotonic()
    wakeup.set()
    await asyncio.wait_for(sleeping, timeout=10)
    assert time.monotonic() - started < 5  # woken, not left for the 30 s interval


async def test_left_alone_it_wakes_when_the_delayed_entry_is_due() -> None:
    """A retry's backoff or a scheduled step: nothing wakes the dispatcher, the entry's time
    does (at most ``NEWS_WITHIN`` late, far inside the 30 s interval here)."""
    storage, wakeup = MemoryStorage(), Wakeup()
    calls = counted(storage)
    await storage.enqueue("later", priority=0, ready_at=utcnow() + timedelta(seconds=0.3))
    d = dispatcher(storage, wakeup)
    started = time.monotonic()
    await asyncio.wait_for(d._sleep(), timeout=20)
    slept = time.monotonic() - started
    assert calls["next_ready_at"] == 1
    assert 0.25 <= slept < 15, slept


async def test_an_interval_shorter_than_the_grace_is_kept() -> None:
    storage, wakeup = MemoryStorage(), Wakeup()
    d = dispatcher(storage, wakeup, interval=NEWS_WITHIN / 5)
    d._full = True  # every slot was taken at the last look
    started = time.monotonic()
    await asyncio.wait_for(d._sleep(), timeout=10)
    assert time.monotonic() - started < 5
    assert not d._full  # an interval without news: the agents are looked at again


async def test_a_caller_that_woke_a_waiting_dispatcher_lets_its_pass_go_first() -> None:
    """A report that queued the next step answers after the pass it woke has taken two
    turns of the loop (its read sent, or its hand-over), not before: the answer's write no
    longer comes between the report and the next hand-over."""
    wakeup = Wakeup()
    order: list[str] = []

    async def dispatcher_loop() -> None:
        await wakeup.woken_within(10)
        order.append("pass")
        await asyncio.sleep(0)  # the hand-over's task takes its first step
        order.append("hand-over")

    waiting = asyncio.create_task(dispatcher_loop())
    await asyncio.sleep(0)  # it waits for a wakeup
    wakeup.set(queued=True)
    async with asyncio.timeout(10):
        await wakeup.let_the_woken_pass_go_first()
    order.append("answer")
    await asyncio.wait_for(waiting, timeout=10)
    assert order == ["pass", "hand-over", "answer"]


async def test_a_busy_dispatcher_costs_the_caller_no_turn_of_the_loop() -> None:
    """Under load the dispatcher is mid-pass when work is queued: the caller answers at once
    (the pass finds the wakeup when it ends), and one with nothing woken does too."""
    wakeup = Wakeup()
    order: list[str] = []

    async def elsewhere() -> None:
        order.append("other work")

    other = asyncio.create_task(elsewhere())
    async with asyncio.timeout(10):  # not wait_for: its own task would take a turn itself
        await wakeup.let_the_woken_pass_go_first()  # nothing woken
        wakeup.set(queued=True)  # no pass waits for it
        await wakeup.let_the_woken_pass_go_first()
    order.append("answer")
    await asyncio.wait_for(other, timeout=10)
    assert order == ["answer", "other work"]
    assert await wakeup.woken_within(0.01)  # the wakeup is still there for the next pass
