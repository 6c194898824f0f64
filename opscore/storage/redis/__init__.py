"""Shared store on Redis (``redis://host:port/db``), for several Ops-Core replicas.

Each record is a JSON string under its own key; a change is a compare-and-set Lua script
(optimistic: decided again on what the store holds when a record changed meanwhile), so
changes are atomic across replicas. The queue
is three sorted sets (delayed, ready, leased) moved by Lua scripts: a claimed entry is leased,
and if the replica that claimed it dies before acknowledging it, the lease expires and another
replica's dispatcher gets it. Turn on Redis's append-only file for durability.
"""

from __future__ import annotations

from ..guard import guard_methods
from .documents import DocumentRecords
from .queue import QueueRecords
from .reports import ReportRecords
from .starts import RunStarts
from .telemetry import TelemetryChannel
from .templates import TemplateRecords


class RedisStorage(
    ReportRecords, RunStarts, TemplateRecords, QueueRecords, DocumentRecords, TelemetryChannel
):
    """``Storage`` on Redis; safe to share between replicas.

    One class per group of records (``agents``, ``runs``, ``queue``) over a shared client and
    its scripts (``base``), so each module stays one responsibility.
    """


__all__ = ["RedisStorage"]


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import RedisError

    return (RedisError, OSError)


# Every public store method answers StorageError while Redis is unreachable.
guard_methods(RedisStorage, _redis_errors, "Redis", skip=("k", "open"))
