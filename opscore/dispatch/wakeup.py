"""The dispatcher's alarm clock, shared with the rooms that give it work or free slots."""

from __future__ import annotations

import asyncio


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

    def set(self, *, capacity: bool = True, queued: bool = False) -> None:
        if capacity:
            self.capacity = True
        if queued:
            self.queued = True
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    def clear(self) -> None:
        self._event.clear()
