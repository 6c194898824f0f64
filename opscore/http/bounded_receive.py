"""An ASGI ``receive`` bounded in time, with no timer when the message is already there.

The gateway reads every body under a deadline (``OPSCORE_BODY_TIMEOUT_SECONDS``): a client
that stops sending must not hold a request for ever. Most bodies, though, came in the same
read as their headers and are in the server's buffer when the gateway asks for them, and
``asyncio.timeout`` arms and cancels a timer and a cancellation scope for each (about 7 us
on this machine; a three-step workflow makes seven requests with a body). So the first step
of ``receive()`` is taken by hand: a message that is there is returned at once, and only a
receive that has to wait goes on, from where it stopped, under the deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any

from starlette.types import Message, Receive


async def receive_within(receive: Receive, seconds: float) -> Message:
    """``await receive()``, raising TimeoutError if it has to wait longer than ``seconds``."""
    steps = receive().__await__()
    try:
        waiting_on = steps.send(None)
    except StopIteration as done:
        message: Message = done.value
        return message
    async with asyncio.timeout(seconds):
        return await _Rest(steps, waiting_on)


class _Rest:
    """The rest of an awaitable whose first step was taken by hand: what it waits on goes up
    to the task, and what the task sends or throws (a cancellation, the deadline's) goes
    down to it, as ``await`` would have done."""

    __slots__ = ("_steps", "_waiting_on")

    def __init__(self, steps: Generator[Any, Any, Any], waiting_on: Any) -> None:
        self._steps = steps
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, Any]:
        steps, waiting_on = self._steps, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                steps.close()
                raise
            except BaseException as exc:  # handed down, as await does
                try:
                    waiting_on = steps.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    waiting_on = steps.send(sent)
                except StopIteration as done:
                    return done.value
