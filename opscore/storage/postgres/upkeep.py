"""PostgresStorage: the tables that churn vacuumed as they churn, not once a minute.

The queue takes a lease and a delete for every step, the agents' histories a record for every
state report and later its trim, the telemetry channel an entry for every log line and span
and later its trim. Autovacuum visits a database once a minute at most
(``autovacuum_naptime``); until it has, the claim's scan in queue order, the histories' trims
and the channel's trim step over every row deleted since. In the workflow benchmark
(``bench.pg_statements --inside``) the claim's execution took 0.09 ms per workflow over 300
workflows and 1.5 ms over 4,000: 14,922 dead rows in the queue, 48 buffers read to find the
one entry ready.

So each replica vacuums such a table itself once its own writes there left ``AFTER`` dead
rows: in the background, a few milliseconds for tables this small, and skipped while another
replica's vacuum of it is under way (``SKIP_LOCKED``). A user that does not own the tables
gets PostgreSQL's warning and nothing done: autovacuum still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger("opscore.storage")
AFTER = 2_000
QUEUE, HISTORY, TELEMETRY = "opscore_queue", "opscore_state_history", "opscore_telemetry"


class Vacuums:
    """Dead rows this process left per table, and the vacuums they call for."""

    def __init__(self, vacuum: Callable[[str], Awaitable[None]], *, after: int = AFTER) -> None:
        self._vacuum = vacuum
        self._after = after
        self._dead = dict.fromkeys((QUEUE, HISTORY, TELEMETRY), 0)
        self._running: dict[str, asyncio.Task[None]] = {}

    def left(self, table: str, rows: int = 1) -> None:
        """``rows`` dead rows left in ``table`` (deleted, or updated: the old version)."""
        dead = self._dead[table] + rows
        if dead < self._after or table in self._running:
            self._dead[table] = dead
            return
        self._dead[table] = 0
        task = asyncio.create_task(self._run(table), name=f"opscore-vacuum-{table}")
        self._running[table] = task
        task.add_done_callback(functools.partial(self._done, table))

    def _done(self, table: str, task: asyncio.Task[None]) -> None:
        if self._running.get(table) is task:
            del self._running[table]

    async def _run(self, table: str) -> None:
        try:
            await self._vacuum(table)
        except Exception as exc:  # the store away, or busy: the next rows call again
            logger.debug("vacuum of %s skipped: %s", table, exc)

    async def stop(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self._running.clear()
