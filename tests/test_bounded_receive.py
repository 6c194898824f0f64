"""``receive_within``: a message already there is taken without a timer; one that has to be
waited for is bounded, and what the awaiting task throws reaches the receive that waits."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from opscore.http.bounded_receive import receive_within

MESSAGE = {"type": "http.request", "body": b"{}", "more_body": False}


class Source:
    """An ASGI receive: answers once ``arrive`` is called (at once if it already was),
    after ``hops`` more turns of the loop; records how it ended."""

    def __init__(self, *, hops: int = 0) -> None:
        self.ready = asyncio.Event()
        self.hops = hops
        self.ended: str | None = None

    def arrive(self) -> None:
        self.ready.set()

    async def __call__(self) -> dict[str, Any]:
        try:
            await self.ready.wait()
            for _ in range(self.hops):
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            self.ended = "cancelled"
            raise
        self.ended = "answered"
        return MESSAGE


def _counting_timers(loop: asyncio.AbstractEventLoop) -> list[float]:
    armed: list[float] = []
    call_at = loop.call_at

    def counted(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(when)
        return call_at(when, *args, **kwargs)

    loop.call_at = counted  # type: ignore[method-assign]
    return armed


async def test_a_message_already_there_is_taken_without_a_timer() -> None:
    source = Source()
    source.arrive()
    armed = _counting_timers(asyncio.get_running_loop())
    assert await receive_within(source, 5) == MESSAGE
    assert armed == [] and source.ended == "answered"


async def test_a_message_that_comes_later_is_waited_for_under_the_deadline() -> None:
    source = Source(hops=3)  # it waits on an event, then yields to the loop three times
    loop = asyncio.get_running_loop()
    armed = _counting_timers(loop)
    loop.call_later(0.05, source.arrive)
    started = loop.time()
    got = await asyncio.wait_for(receive_within(source, 5), 10)
    assert got == MESSAGE and source.ended == "answered"
    # besides the arrival's and wait_for's: the deadline's, 5 s on
    assert [when for when in armed if 4.5 < when - started <= 5.5]


async def test_a_message_that_never_comes_raises_timeout_and_cancels_the_receive() -> None:
    source = Source()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(receive_within(source, 0.2), 10)
    assert loop.time() - started >= 0.19
    assert source.ended == "cancelled"


async def test_a_cancellation_from_outside_reaches_the_waiting_receive() -> None:
    source = Source()
    task = asyncio.create_task(receive_within(source, 30))
    for _ in range(5):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert source.ended == "cancelled"


async def test_an_error_of_the_receive_comes_through_both_ways() -> None:
    async def broken_at_once() -> dict[str, Any]:
        raise OSError("gone")

    with pytest.raises(OSError, match="gone"):
        await receive_within(broken_at_once, 5)

    ready = asyncio.Event()

    async def broken_later() -> dict[str, Any]:
        await ready.wait()
        raise OSError("later")

    asyncio.get_running_loop().call_later(0.02, ready.set)
    with pytest.raises(OSError, match="later"):
        await asyncio.wait_for(receive_within(broken_later, 5), 10)


async def test_a_cancellation_while_the_receive_yields_without_a_future_is_not_lost() -> None:
    """A task cancelled between two bare yields of what it awaits has no future to find
    cancelled: only the CancelledError thrown down ends the receive."""
    spins = 0
    give_up = False

    async def spinning() -> dict[str, Any]:
        nonlocal spins
        while not give_up:  # yields to the loop with no future, until cancelled
            spins += 1
            await asyncio.sleep(0)
        return MESSAGE

    task = asyncio.create_task(receive_within(spinning, 30))
    while spins < 5:
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)  # wait() does not cancel on time-out
    give_up = True  # a receive the cancellation missed now ends, so the test can
    await asyncio.wait({task}, timeout=5)
    assert done == {task} and task.cancelled()
