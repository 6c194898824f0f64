"""The sweeps of tasks in flight, run together on one read of those that are due.

Task timeouts, wait timeouts, pull workers' leases and A2A polls look at tasks in flight at
every round of sweeps (twice a second at the default dispatch interval). Each used to read
them all from the store: eight reads (and parses of every task) a second per replica; with
2,000 tasks in flight an idle replica spent 6-9% of a core on it on SQLite, Redis and
PostgreSQL. One read per round brought that to 2.4-3.8%; reading only the tasks that are due
(the stores index each by the earliest moment a sweep may act on it, ``models/sweep_due.py``)
to what it costs with none in flight (``python -m bench.inflight``).

What a sweep sees may have been moved by a sweep before it in the same round (a pull task
whose deadline and lease both ran out). Every move a sweep makes is a compare-and-set from
the status and attempt it read, so acting on such a task changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

from ..dispatch.dispatcher import run_sweep
from ..models import TaskRun
from ..storage.base import Storage

InflightSweep = Callable[[datetime, list[TaskRun]], Awaitable[None]]


class InflightSweeps:
    """One dispatcher sweep: reads the in-flight tasks that are due, then runs each sweep on
    them (each still checks its own condition: the index only says when to look)."""

    def __init__(self, storage: Storage, sweeps: Sequence[InflightSweep]) -> None:
        self.storage = storage
        self.sweeps = list(sweeps)

    async def __call__(self, now: datetime) -> None:
        tasks = await self.storage.inflight_tasks(due_by=now)
        for sweep in self.sweeps:
            await run_sweep(sweep, now, tasks)
