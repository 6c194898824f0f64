"""Loaded by ``bench.steps`` into the Ops-Core process it starts (on ``PYTHONPATH``), never by
Ops-Core itself: it stamps the start and end of what one workflow's steps are made of (the
requests Ops-Core serves and the writes of their answers, the dispatcher's passes, its claims
and hand-over writes, the hand-overs to the agents, every call of the store, and on Redis each
round trip of the command batcher) and writes them as JSON to ``$OPSCORE_STEP_PROBE`` on
SIGUSR1. A bounded ring of stamps: the probe must not change the memory of what it measures by
more than a few MB. Each stamp costs the process about a microsecond."""

from __future__ import annotations

import collections
import functools
import inspect
import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

_OUT = os.environ.get("OPSCORE_STEP_PROBE", "")
KEEP = 300_000  # stamps (about 15 MB at most)
# store methods left out: start-up and shutdown, and the liveness check
NOT_CALLS = frozenset({"open", "close", "ping"})

_stamps: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=KEEP)


def stamp(kind: str, label: str = "") -> None:
    """One stamp: wall clock (as the server's own timestamps), a kind ending in ``<`` (start)
    or ``>`` (end), and a label."""
    _stamps.append((time.time(), kind, label))


def around(owner: Any, name: str, kind: str) -> None:
    """Stamp each call of the coroutine method ``owner.name`` at its start and end."""
    original = getattr(owner, name)
    if getattr(original, "_step_probe", False):
        return

    @functools.wraps(original)
    async def stamped(*args: Any, **kwargs: Any) -> Any:
        stamp(kind + "<", name)
        try:
            return await original(*args, **kwargs)
        finally:
            stamp(kind + ">", name)

    stamped._step_probe = True  # type: ignore[attr-defined]
    setattr(owner, name, stamped)


def _requests() -> None:
    """Each HTTP request (its path), and each answer the gateway writes itself."""
    from opscore.http import gateway

    middleware = gateway.RequestContextMiddleware
    call = middleware.__call__

    async def served(self: Any, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "") if scope.get("type") == "http" else ""
        stamp("request<", path)
        try:
            await call(self, scope, receive, send)
        finally:
            stamp("request>", path)

    middleware.__call__ = served  # type: ignore[method-assign]
    around(gateway, "_send_json", "answer")


def _dispatcher() -> None:
    from opscore.dispatch import dispatcher, transports

    around(dispatcher.Dispatcher, "tick", "pass")
    around(dispatcher.Dispatcher, "_claim", "claim")
    around(dispatcher.Dispatcher, "_start", "dispatch_write")
    around(transports.HttpTransport, "send", "handover")


def _store() -> None:
    """Every public coroutine method of the store the service builds, wrapped once per class."""
    from opscore import container

    build = container.storage_from_url

    def storage_from_url(*args: Any, **kwargs: Any) -> Any:
        store = build(*args, **kwargs)
        for name, _member in inspect.getmembers(type(store), inspect.iscoroutinefunction):
            if not name.startswith("_") and name not in NOT_CALLS:
                around(type(store), name, "store")
        return store

    container.storage_from_url = storage_from_url


def _redis_round_trips() -> None:
    """The command batcher's batches out and replies in (``storage/redis/batch.py``)."""
    from opscore.storage.redis import batch

    replies = batch._Replies
    send: Callable[..., None] = replies.send
    received: Callable[..., None] = replies.data_received

    def sent(self: Any, commands: list[Any]) -> None:
        stamp("redis<", str(len(commands)))
        send(self, commands)

    def data_received(self: Any, data: bytes) -> None:
        stamp("redis>")
        received(self, data)

    replies.send = sent  # type: ignore[method-assign,assignment]
    replies.data_received = data_received  # type: ignore[method-assign]


def dump(*_: object) -> None:
    with open(_OUT + ".part", "w") as f:
        json.dump(list(_stamps), f)
    os.replace(_OUT + ".part", _OUT)  # read whole or not at all


if _OUT:
    _requests()
    _dispatcher()
    _store()
    _redis_round_trips()
    signal.signal(signal.SIGUSR1, dump)
