"""Compare-and-sets asked at the same moment go to Redis as one script call.

A dispatch pass starts several attempts at once (one compare-and-set each: the task and its
agent's slot), and reports that come in together are written together. Sent one script each,
every one costs Redis the script call and the MGET that reads its records; sent as one
``CAS_GROUPS`` call, they cost one of each (when no two share a record: ``scripts.py``), and
run in turn, each exactly as it would on its own. What a caller gets back is its own
script's answer, so nothing above this module knows.

A group is asked for at once, not held: those asked in the same turn of the event loop go
out together at the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

# groups per script call at most, and the arguments one group may have to join others (a
# group is copied into a table of its own in the script; a large one goes alone)
MAX_GROUPS = 64
MAX_GROUP_ARGS = 2000

Run = Callable[[str, list[str], list[Any]], Awaitable[Any]]


class CasGroups:
    """Collects the compare-and-sets of one turn of the event loop; ``run(script, keys,
    args)`` sends a script call (``_Base._script``)."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._pending: list[tuple[list[str], list[str], asyncio.Future[Any]]] = []
        self._scheduled = False

    def call(self, keys: list[str], args: list[str]) -> Awaitable[Any]:
        """The answer of ``CAS`` for ``keys`` and ``args``, sent with the others of this turn."""
        if len(args) > MAX_GROUP_ARGS:
            return self._run("cas", keys, args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((keys, args, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for first in range(0, len(pending), MAX_GROUPS):
            sending = asyncio.ensure_future(self._send(pending[first : first + MAX_GROUPS]))
            sending.add_done_callback(_retrieved)

    async def _send(self, groups: list[tuple[list[str], list[str], asyncio.Future[Any]]]) -> None:
        try:
            if len(groups) == 1:
                keys, args, _ = groups[0]
                answers = [await self._run("cas", keys, args)]
            else:
                flat_keys: list[str] = []
                flat_args: list[Any] = []
                for keys, args, _ in groups:
                    flat_keys += keys
                    flat_args += [len(keys), len(args), *args]
                answers = await self._run("cas_groups", flat_keys, flat_args)
        except BaseException as exc:
            for _, _, future in groups:
                if not future.done():
                    future.set_exception(
                        exc if isinstance(exc, Exception) else RedisConnectionError()
                    )
            raise
        for (_, _, future), answer in zip(groups, answers, strict=True):
            if future.done():  # its caller gave up (cancelled)
                continue
            if isinstance(answer, Exception):  # this group's own error reply
                future.set_exception(answer)
            else:
                future.set_result(answer)


def _retrieved(sending: asyncio.Future[None]) -> None:
    """Its callers were given the error already; not logged again as never retrieved."""
    if not sending.cancelled():
        sending.exception()
