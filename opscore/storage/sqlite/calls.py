"""Where each SQLite store call runs: on the event loop, or on the store's own thread.

A hop to the thread costs about 85 us of CPU; a point read on the loop about 2 us and a
point write about 11 us (bench/README.md). So point calls (`quick`) run on the loop, on a
connection that never waits, and only what may wait goes to the thread: a point call that
found the file locked by another writer, writes that may be long (`off_loop`), and reads that
may be long (`scan`).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from .worker import GroupCommitThread, storage_error


class _OnAThread(Protocol):
    _worker: GroupCommitThread


S = TypeVar("S", bound=_OnAThread)
P = ParamSpec("P")
R = TypeVar("R")
StoreCall = Callable[Concatenate[S, P], Coroutine[Any, Any, R]]


class FileLockedError(Exception):
    """The file is locked by another writer: this call must wait, so it leaves the loop."""


def on_loop_error(exc: sqlite3.Error) -> Exception:
    """A lock another writer holds means "wait" (on the thread); anything else is an error."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return FileLockedError()
    return storage_error(exc)


def quick(method: Callable[Concatenate[S, P], R]) -> StoreCall[S, P, R]:
    """Run a point call (a row or two) at once on the event loop if the file's write lock is
    free; otherwise on the store's thread, as `off_loop`. A call that found the lock taken
    wrote nothing, so it runs again there, from the start. It may pass calls queued there:
    their callers are still waiting for their answers, so none has seen them in an order."""

    @functools.wraps(method)
    async def run(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(self, *args, **kwargs)
        except FileLockedError:
            pass
        result: R = await self._worker.call(functools.partial(method, self, *args, **kwargs))
        return result

    return run


def off_loop(method: Callable[Concatenate[S, P], R]) -> StoreCall[S, P, R]:
    """Run a store method on the store's own thread (``worker.GroupCommitThread``), not on
    the event loop, inside a transaction it may share with other calls queued meanwhile."""

    @functools.wraps(method)
    async def run(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        result: R = await self._worker.call(functools.partial(method, self, *args, **kwargs))
        return result

    return run


def alone(method: Callable[Concatenate[S, P], R]) -> StoreCall[S, P, R]:
    """Run a store method on the store's thread outside any shared transaction: open and
    close, and reads that may be long (`scan`)."""

    @functools.wraps(method)
    async def run(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        call = functools.partial(method, self, *args, **kwargs)
        result: R = await self._worker.call(call, alone=True)
        return result

    return run


# A read that may be long (a list, a scan) runs on the store's thread in a read transaction
# of its own, which holds no lock that the writes on the loop would wait for.
scan = alone
