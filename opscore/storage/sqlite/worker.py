"""The SQLite store's own thread, with group commit.

Calls that may wait run here, never on the event loop: a scan, a batch delete, a checkpoint,
and a point call that found the file locked by another writer (``calls``). A slow disk or a
lock held by another process then stalls that call, not every request. Calls that queue up
while the thread is busy run together in one transaction, each inside its own savepoint: a
call that fails (a conflict, an unknown agent) rolls back only its own writes, and nobody
hears an answer before the COMMIT that makes every write of the group durable. Under load
this turns one BEGIN/COMMIT (and one wake-up of the event loop) per call into one per group;
alone, a call is a transaction of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from ...errors import StorageError

MAX_GROUP = 64  # calls per transaction at most, so one group never holds the lock for long


def storage_error(exc: sqlite3.Error) -> StorageError:
    """What a SQLite error becomes for the store's callers (503 STORAGE_UNAVAILABLE)."""
    return StorageError(f"SQLite error: {exc}")


_Call = tuple[Callable[[], Any], asyncio.Future[Any] | None, asyncio.AbstractEventLoop | None, bool]
_STOP = object()


class GroupCommitThread:
    """One thread that runs store calls in order, several per transaction when they queue."""

    def __init__(self, connection: Callable[[], sqlite3.Connection | None]) -> None:
        self._connection = connection
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="opscore-sqlite", daemon=True)
        self._thread.start()
        # Set while a group's transaction is open: calls then write inside it (a savepoint).
        self.in_group = False

    async def call(self, fn: Callable[[], Any], *, alone: bool = False) -> Any:
        """Run ``fn`` on the thread; ``alone`` runs it outside any transaction (open, close,
        and PRAGMAs that a transaction refuses)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put((fn, future, loop, alone))
        return await future

    def background(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the thread, alone, answering nobody (a checkpoint)."""
        self._queue.put((fn, None, None, True))

    def is_current(self) -> bool:
        """Whether the caller runs on this thread."""
        return threading.current_thread() is self._thread

    def stop(self) -> None:
        self._queue.put(_STOP)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group: list[_Call] = [first]
            stop = False
            while len(group) < MAX_GROUP and not group[-1][3]:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                if more[3]:  # a call that must run alone waits for its own turn
                    self._run_group(group)
                    group = [more]
                    break
                group.append(more)
            self._run_group(group)
            if stop:
                return

    def _run_group(self, group: list[_Call]) -> None:
        if group[0][3]:
            self._deliver([(group[0], *_outcome(group[0][0]))])
            return
        conn = self._connection()
        if conn is None:
            closed = StorageError("SQLite store is not open")
            self._deliver([(c, None, closed) for c in group])
            return
        outcomes: list[tuple[_Call, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            busy = storage_error(exc)
            self._deliver([(c, None, busy) for c in group])
            return
        self.in_group = True
        try:
            for call in group:
                conn.execute("SAVEPOINT call")
                result, error = _outcome(call[0])
                if error is None:
                    conn.execute("RELEASE call")
                else:
                    conn.execute("ROLLBACK TO call")
                    conn.execute("RELEASE call")
                outcomes.append((call, result, error))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:  # the COMMIT itself (a full disk): nothing was written
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failed = storage_error(exc)
            outcomes = [(c, None, failed) for c in group]
        finally:
            self.in_group = False
        self._deliver(outcomes)

    def _deliver(self, outcomes: list[tuple[_Call, Any, BaseException | None]]) -> None:
        """Answer every caller, with one wake-up per event loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Any, Any, Any]]] = {}
        for (_, future, loop, _), result, error in outcomes:
            if future is None or loop is None:
                continue  # in the background: nobody waits
            by_loop.setdefault(loop, []).append((future, result, error))
        for loop, answers in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits
                loop.call_soon_threadsafe(_answer, answers)


def _outcome(fn: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    try:
        return fn(), None
    except sqlite3.Error as exc:
        return None, storage_error(exc)
    except BaseException as exc:
        return None, exc


def _answer(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in answers:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
