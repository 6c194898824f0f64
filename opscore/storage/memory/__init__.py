"""The embedded default store: dicts and heaps in this process, guarded by one lock.

The lock is a ``threading.Lock`` held only around dict and heap operations, never across an
``await``, so each method is atomic for every coroutine and thread of the process.
"""

from __future__ import annotations

from .agents import AgentRecords
from .documents import DocumentRecords
from .queue import QueueRecords
from .runs import RunRecords


class MemoryStorage(AgentRecords, RunRecords, QueueRecords, DocumentRecords):
    """Lock-guarded in-memory implementation of ``Storage``.

    One class per group of records (``agents``, ``runs``, ``queue``, ``documents``) over the shared dicts and
    their lock (``base``), so each module stays one responsibility.
    """


__all__ = ["MemoryStorage"]
