"""This process's own writes to one record, one after another (the shared stores'
compare-and-set).

A compare-and-set decides on a record as this process last saw it, and the store refuses it
when the record has changed since. Two writes of this process to the same record at once (an
agent's 202 and its ``active`` report come together) would both decide on the value before
either landed: the second is refused, and it costs a second round trip. Waiting for the first
to land lets the second decide on what it wrote, in one. Replicas still collide; the store's
compare-and-set settles those.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager


class WriteTurns:
    """Per record key, the write of this process under way, for the next one to wait on.

    Not re-entrant: a write that holds a key's turn must not start another write of that key
    (it would wait on itself). Take the turn before a pooled connection, so writes that wait
    never hold one the write they wait on needs."""

    def __init__(self) -> None:
        self._writing: dict[str, asyncio.Event] = {}

    @asynccontextmanager
    async def turn(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Wait until no write of this process holds any of ``keys``, then hold them."""
        keys = list(keys)
        while busy := next((self._writing[k] for k in keys if k in self._writing), None):
            await busy.wait()
        mine = asyncio.Event()
        for key in keys:
            self._writing[key] = mine
        try:
            yield
        finally:
            for key in keys:
                if self._writing.get(key) is mine:
                    del self._writing[key]
            mine.set()
