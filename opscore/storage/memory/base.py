"""Shared state: every dict, heap and index, and the one lock that guards them.

The embedded default store: dicts and heaps in this process, guarded by one lock.

The lock is a ``threading.Lock`` held only around dict and heap operations, never across an
``await``, so each method is atomic for every coroutine and thread of the process.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from ...models import (
    DeadLetter,
    Page,
    Session,
    StateRecord,
    TaskRun,
    WorkflowTemplate,
)
from ...models.sweep_due import INFLIGHT, sweep_due
from ..fleet import AgentsById
from ..report_and_task import QueuedNext, next_queued

T = TypeVar("T")


def _page(items: list[T], offset: int, limit: int) -> Page[T]:
    return Page(items=items[offset : offset + limit], total=len(items), offset=offset, limit=limit)


class _Base:
    """Lock-guarded in-memory implementation of ``Storage``."""

    writes_together = False  # each write is done at once

    def __init__(self, *, finished_session_limit: int = 10_000) -> None:
        self.finished_session_limit = finished_session_limit
        self._finished: deque[str] = deque()
        self._lock = threading.Lock()
        self._agents = AgentsById()  # with those that have a free slot (fleet.py)
        # History is kept as JSON bytes: a third of the memory of model objects, and invisible
        # to the cyclic GC, whose full passes over millions of objects stalled requests.
        self._history: dict[str, deque[bytes]] = {}
        self._held: dict[str, StateRecord] = {}
        self._workflows: dict[str, dict[str, WorkflowTemplate]] = {}
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        # (creation number, id) per status, sorted: dashboards and clients poll "the newest
        # completed" and "how many completed" constantly; this answers without a walk
        self._by_status: dict[str, list[tuple[int, str]]] = {}
        self._session_number: dict[str, int] = {}
        self._session_counter = itertools.count()
        self._tasks: dict[str, TaskRun] = {}
        self._session_tasks: dict[str, list[str]] = {}
        # the tasks in flight, each with when a sweep may next act on it (models.sweep_due)
        self._inflight: dict[str, datetime | None] = {}
        self._ready: list[tuple[int, int, str]] = []
        self._delayed: list[tuple[datetime, int, str, int]] = []
        self._queued: dict[str, int] = {}
        self._since: dict[str, datetime] = {}  # each queued task's ready_at, until acked
        self._seq = itertools.count()
        self._dead: OrderedDict[str, DeadLetter] = OrderedDict()
        self._idempotency: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        # kind -> id -> (JSON document, when it is due)
        self._documents: dict[str, dict[str, tuple[str, datetime | None]]] = {}

    def _put_in_queue(self, task_id: str, priority: int, ready_at: datetime) -> None:
        """Queue (or re-queue) a task; the caller holds the lock."""
        seq = next(self._seq)
        self._queued[task_id] = seq
        self._since[task_id] = ready_at
        heapq.heappush(self._delayed, (ready_at, seq, task_id, priority))

    def _acknowledge(self, task_id: str) -> None:
        """``ack`` of one entry; the caller holds the lock. One process: a dequeued entry
        cannot be orphaned by another, so only its age is forgotten (unless queued again)."""
        if task_id not in self._queued:
            self._since.pop(task_id, None)

    def _queue_next(self, then: QueuedNext | None) -> TaskRun | None:
        """The next step a completion queues with it (``TaskUpdate.then``), when still
        pending; the caller holds the lock."""
        queued = next_queued(then, self._tasks.get(then.task_id)) if then else None
        if then is not None and queued is not None:
            self._tasks[queued.task_id] = queued
            self._put_in_queue(queued.task_id, queued.priority, then.ready_at)
        return queued

    def _track_inflight(self, task: TaskRun) -> None:
        """Keep ``inflight_tasks``' index; the caller holds the lock."""
        if task.status in INFLIGHT:
            self._inflight[task.task_id] = sweep_due(task)
        else:
            self._inflight.pop(task.task_id, None)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    def set_queue_listener(self, listener: Callable[[], None]) -> None:
        """Nothing to listen to: one process owns this store, and wakes its own dispatcher."""
