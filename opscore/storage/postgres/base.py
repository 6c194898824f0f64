"""Shared plumbing: the connection pool, migrations, the queue's notifications, the guard.

Shared store on PostgreSQL (``postgresql://user:password@host:port/database``) for several
Ops-Core replicas, on asyncpg's pool.

Records are JSON documents (text, exactly as Ops-Core wrote them) beside the columns that
queries filter or sort on, in tables named ``opscore_*``. Every compare-and-set is one
``UPDATE ... WHERE doc = <the document decided on>`` (see ``_cas``): atomic across replicas,
and usually one round trip, since the document decided on is the one this process last read
or wrote (``storage.seen``), checked by the database, re-read only when it changed.
Claims from the queue use ``FOR UPDATE SKIP LOCKED``: replicas claiming at once each get
different entries and never wait on each other. A claimed entry is leased; if its replica dies
before acknowledging it, the lease expires and another replica's dispatcher gets it.
``NOTIFY opscore_queue`` on every enqueue wakes every replica's dispatcher at once (``LISTEN``
on one connection per replica, re-established when the server comes back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from ...errors import OpsCoreError, StorageError
from ..fleet import FleetView
from ..history_trims import HistoryTrims
from ..parsed import PARSED
from ..seen import GUESSES, UNSEEN, Seen
from ..turns import WriteTurns
from ..urls import redacted
from .fleet import FleetSince
from .migrations import SchemaTooNewError, migrate
from .upkeep import Vacuums

logger = logging.getLogger("opscore.storage")
M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
LEASE = timedelta(seconds=30)
CHANNEL = "opscore_queue"
_INFLIGHT = ["dispatched", "running", "waiting"]  # what inflight_tasks returns
_FINISHED = ["completed", "failed", "cancelled"]


def _load(model: type[M], doc: str) -> M:
    return PARSED.load(model, doc)


async def _no_reset(_conn: Any) -> None:
    return None


def _left_mid_operation(exc: Exception) -> bool:
    """Whether a driver error may have left its connection unusable for the next caller."""
    import asyncpg

    return isinstance(exc, asyncpg.InternalClientError | asyncpg.InterfaceError)


def doc_unless(written: str, table: str, key: str, param: str) -> str:
    """A row's document in a compare-and-set's answer, NULL when ``written`` (an SQL
    condition on the statement's CTEs) holds. Every part of a statement sees the rows as they
    were before it, so a written row's document would be the one it replaced, which no caller
    reads: a caller reads the answer's documents only to decide again when nothing was
    written. Sending them back regardless was two documents (a few kB) per state report."""
    return f"CASE WHEN {written} THEN NULL ELSE (SELECT doc FROM {table} WHERE {key} = {param}) END"


# An agent's row and a task's written together, both or neither, and what goes with them
# (functions.py has the function, and says why it is one). The agent's row is locked before
# the task's, in every call, so two calls never deadlock. Its parameters, in the order of
# ``agent_and_task_args``: the agent's id, state, last seen, document and the document decided
# on; the task's id, status, document and the document decided on; the report for the
# agent's history and how many before it are kept (-1: no trim); whether the task's leased
# queue entry is acknowledged; the next step as ``NextSteps._next_step`` gives it; the run's
# end as ``NextSteps._run_end`` gives it. Answers whether both rows were written, the
# agent's and the task's documents when they were not, and whether the step was queued or
# the run ended.
AGENT_AND_TASK = (
    "SELECT * FROM opscore_agent_and_task(" + ", ".join(f"${n}" for n in range(1, 28)) + ")"
)
_NO_NEXT_STEP = (None,) * 8
_NO_RUN_END = (None,) * 7


def agent_and_task_args(
    agent: tuple[Any, ...],
    task: tuple[Any, ...],
    *,
    report: str | None = None,
    kept: int = -1,
    ack: bool = False,
    next_step: tuple[Any, ...] = (),
    run_end: tuple[Any, ...] = (),
) -> tuple[Any, ...]:
    """``AGENT_AND_TASK``'s parameters: ``agent`` (id, state, last seen, document, the
    document decided on) and ``task`` (id, status, document, the document decided on), with
    what goes with them: at most one of ``next_step`` and ``run_end``."""
    return (
        *agent,
        *task,
        report,
        kept,
        ack,
        *(next_step or _NO_NEXT_STEP),
        *(run_end or _NO_RUN_END),
    )


def run_ended_after(moved: str, first: int) -> str:
    """A CTE ``run_ended`` that writes the run's session as ``runs._session_row`` gives it
    (``$first`` its id, then its status, workflow, agent, finish and document) only if the
    row still holds the document decided on (``$first + 6``) and ``moved`` wrote a row."""
    f = first
    return f"""
run_ended AS (
    UPDATE opscore_sessions SET status = ${f + 1}, workflow_id = ${f + 2}, agent_id = ${f + 3},
        finished_at = ${f + 4}, doc = ${f + 5}
    WHERE session_id = ${f} AND doc = ${f + 6} AND EXISTS (SELECT 1 FROM {moved})
    RETURNING 1)"""


def queued_after(moved: str, priority: int, channel: int, name: str = "queued") -> str:
    """CTEs that queue the task the CTE ``moved`` returns (its ``task_id``), as ``enqueue``
    does: ``$priority`` its priority, ``$priority + 1`` when it is ready; and NOTIFY on
    ``$channel`` from ``$channel + 1`` when it was. ``{name}_woken`` has a row if it was."""
    p, r = priority, priority + 1
    return f"""
{name} AS (
    INSERT INTO opscore_queue (task_id, priority, ready_at, seq, lease_until)
    SELECT task_id, ${p}::integer, ${r}::timestamptz, nextval('opscore_queue_seq'), NULL
    FROM {moved}
    ON CONFLICT (task_id) DO UPDATE SET priority = ${p}::integer, ready_at = ${r}::timestamptz,
        seq = nextval('opscore_queue_seq'), lease_until = NULL
    RETURNING task_id),
{name}_woken AS (
    SELECT 1 FROM {name} CROSS JOIN LATERAL (SELECT pg_notify(${channel}, ${channel + 1})) AS n)"""


# (the UPDATE that writes if the row still holds the expected document, with its parameters
# before that document, and the new document), or None to write nothing
Write = tuple[str, tuple[Any, ...], str] | None


class _Base:
    """``Storage`` on PostgreSQL; safe to share between replicas."""

    writes_together = False  # a statement each; at once, they only take more of the pool

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.pool_size = pool_size
        self._pool: Any = None
        self._listener: Any = None
        self._listen_task: asyncio.Task[None] | None = None
        self._on_queue: Callable[[], None] | None = None
        self._closing = False
        # a replica ignores the notifications it sent itself: it has already woken
        self._token = f"{os.getpid()}-{id(self)}"
        self._seen = Seen(GUESSES)
        self._fleet = FleetView()  # the agents as last read, parsed (storage/fleet.py)
        self._fleet_since = FleetSince()  # the last read's horizon (fleet.py)
        self._history_trims = HistoryTrims()  # which reports trim their agent's history
        # rows with a compare-and-set of this process in flight (_cas, claims, reports)
        self._turns = WriteTurns()
        self._vacuums = Vacuums(self._vacuum)  # the tables that churn (upkeep.py)
        # the telemetry channel's ids this reader has passed, oldest first (telemetry.py)
        self._seen_ids: deque[int] = deque()
        self._seen_set: set[int] = set()

    def set_queue_listener(self, listener: Callable[[], None]) -> None:
        self._on_queue = listener

    async def open(self) -> None:
        import asyncpg

        self._closing = False
        try:
            self._pool = await asyncpg.create_pool(
                self.url,
                min_size=1,
                max_size=self.pool_size,
                command_timeout=30,
                timeout=10,
                # no session state is ever changed on pooled connections (LISTEN has its own),
                # so the default reset query would be one more round trip per call for nothing
                reset=_no_reset,
            )
            async with self._pool.acquire() as conn:
                applied = await migrate(conn)
        except SchemaTooNewError as exc:
            await self._close_pool()
            raise StorageError(f"PostgreSQL at {redacted(self.url)}: {exc}") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            await self._close_pool()
            raise StorageError(f"Cannot reach PostgreSQL at {redacted(self.url)}: {exc}") from exc
        if applied:
            logger.info("storage.migrated", extra={"schemaVersions": applied})
        self._listen_task = asyncio.create_task(self._listen_forever())

    async def _close_pool(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5)

    async def close(self) -> None:
        self._closing = True
        await self._vacuums.stop()
        if self._listen_task is not None:
            self._listen_task.cancel()
            with contextlib.suppress(BaseException):
                await self._listen_task
            self._listen_task = None
        await self._close_listener()
        await self._close_pool()

    async def _close_listener(self) -> None:
        if self._listener is not None:
            listener, self._listener = self._listener, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(listener.close(), 2)

    async def _listen_forever(self) -> None:
        """Keep one LISTEN connection; when the server goes away, reconnect with backoff
        (the dispatcher's own interval covers the gap) and wake the dispatcher once back,
        since notifications sent meanwhile are lost."""
        import asyncpg

        delay = 0.2
        while not self._closing:
            lost = asyncio.Event()
            try:
                self._listener = await asyncpg.connect(self.url, timeout=10)
                self._listener.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await self._listener.add_listener(CHANNEL, self._notified)
                delay = 0.2
                if self._on_queue is not None:
                    self._on_queue()
                await lost.wait()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                pass
            await self._close_listener()
            if not self._closing:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload != self._token and self._on_queue is not None:
            self._on_queue()

    async def _vacuum(self, table: str) -> None:
        async with self._conn() as conn:
            await conn.execute(f"VACUUM (SKIP_LOCKED) {table}")

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        """A pooled connection. One that a driver error leaves mid-operation is closed, not
        given back: the pool does not reset connections (``_no_reset``), so asyncpg would
        hand it to the next caller, which would fail with "another operation is in
        progress" (seen as PostgreSQL was SIGKILLed: a connection was still reading the
        rest of an error the server never finished sending)."""
        if self._pool is None:
            raise StorageError("PostgreSQL store is not open")
        async with self._pool.acquire() as conn:
            try:
                yield conn
            except Exception as exc:
                if _left_mid_operation(exc):
                    conn.terminate()
                raise

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[Any]:
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def _read_afresh(self, conn: Any, key: str, read: str, ident: str) -> str | None:
        """The row's document (``read`` by ``ident``), remembered as this process's sight of
        it under ``key``."""
        doc: str | None = await conn.fetchval(read, ident)
        self._seen.put(key, doc)
        return doc

    async def _cas(
        self,
        cache_key: str,
        read: str,
        key: str,
        decide: Callable[[str | None], tuple[Write, R]],
    ) -> R:
        """Optimistic read-modify-write of one row's document, usually in one round trip.

        ``decide(doc)`` returns (the write, or None, and the result). It first decides on the
        document this process last read or wrote; the write's ``WHERE doc = $n`` applies it
        only if the row still holds exactly that document. A write answers (whether it wrote,
        the row's current document), so when the row had changed, ``decide`` runs again on
        what the same round trip brought back; when a guess led to writing nothing, the row
        is read (``read``) first. (Replicas sharing agents collide often: a second replica
        spent a round trip more per collision, about 2 per workflow, bench/README.md.) A
        write of this process to the same row waits for the one under way (``WriteTurns``).
        """
        async with self._turns.turn((cache_key,)), self._conn() as conn:
            return await self._cas_on(conn, cache_key, read, key, decide)

    async def _cas_on(
        self,
        conn: Any,
        cache_key: str,
        read: str,
        key: str,
        decide: Callable[[str | None], tuple[Write, R]],
    ) -> R:
        doc = self._seen.get(cache_key)
        fresh = doc is UNSEEN
        if fresh:
            doc = await conn.fetchval(read, key)
        while True:
            try:
                write, result = decide(doc)
            except OpsCoreError:
                if fresh:
                    raise
                # refused on a guess (an unknown agent, a stale timestamp): ask the store
                doc, fresh = await conn.fetchval(read, key), True
                continue
            if write is None:
                if fresh:
                    self._seen.put(cache_key, doc)
                    return result
            elif doc is None:  # decide() writes nothing for an absent row
                raise StorageError(f"compare-and-set of absent {cache_key} cannot write")
            else:
                sql, args, new_doc = write
                written, current = await conn.fetchrow(sql, *args, doc)
                if written:
                    self._seen.put(cache_key, new_doc)
                    return result
                # not written: the row changed since; the same answer says to what
                doc, fresh = current, True
                continue
            doc, fresh = await conn.fetchval(read, key), True
