"""The dispatcher's alarm clock, shared with the rooms that give it work or free slots."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

# A pass woken this soon after the last one starts without asking the store when its next
# delayed entry is due (one store call less per pass: most passes are woken this soon, under
# load and at each step's end of a run); an entry that falls due meanwhile is handed over at
# most this much later.
NEWS_WITHIN = 0.005


class Wakeup:
    """What wakes the dispatcher, and whether agent capacity may have changed since its last
    look. Work queued while every slot is taken needs no pass: only a freed slot, a new or
    idle agent, a raised limit or budget (``capacity=True``, the default) does."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.capacity = True
        # this process queued a task since the dispatcher's last look: the queue is very
        # likely not empty, so the pass reads the queue and the agents at once
        self.queued = False
        self._waiting = False  # the dispatcher waits for a wakeup (woken_within)

    def set(self, *, capacity: bool = True, queued: bool = False) -> None:
        if capacity:
            self.capacity = True
        if queued:
            self.queued = True
        self._event.set()

    async def let_the_woken_pass_go_first(self) -> None:
        """Two turns of the event loop for a pass its caller just woke from a wait, before the
        caller goes on to write its answer: the pass reads the queue and (on memory:// and
        SQLite) hands the task over, and the hand-over's first write (on Redis and PostgreSQL
        the pass's first read) goes out ahead of the answer instead of after it."""
        if self._waiting and self._event.is_set():
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    async def sleep(self, interval: float, due_in: Callable[[], Awaitable[float | None]]) -> bool:
        """Until woken, until the next delayed entry is due (``due_in``: seconds, or None
        when none waits), or for ``interval`` at most; False when nothing came.

        ``due_in`` asks the store (a round trip on Redis and PostgreSQL), so only once
        ``NEWS_WITHIN`` has passed without a wakeup. Asked at once after each pass, it was
        often still in flight on Redis (one batch of commands at a time) when the agent's
        first report came, whose write then waited for it."""
        grace = min(NEWS_WITHIN, interval)
        if await self.woken_within(grace):
            return True
        timeout = interval - grace
        due = await due_in()
        if due is not None:
            timeout = min(timeout, max(due, 0.001))
        if await self.woken_within(timeout):
            return True
        self._event.clear()
        return False

    async def woken_within(self, seconds: float) -> bool:
        """Whether a wakeup came within ``seconds`` (then cleared, for the pass it starts);
        one that came already counts at once, with no timer armed for it (under load,
        most passes find they were woken during the last one)."""
        if self._event.is_set():
            self._event.clear()
            return True
        # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation that arrives
        # as the event is set, which left shutdown waiting for ever.
        self._waiting = True
        try:
            async with asyncio.timeout(seconds):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._waiting = False
        self._event.clear()
        return True
