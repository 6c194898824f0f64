"""Shared store on PostgreSQL (``postgresql://user:password@host:port/database``), for
several Ops-Core replicas; see ``base`` for how it stays atomic and wakes every replica."""

from __future__ import annotations

from .agents import AgentRecords
from .base import _guard
from .queue import QueueRecords
from .runs import RunRecords
from .telemetry import TelemetryChannel


class PostgresStorage(AgentRecords, RunRecords, QueueRecords, TelemetryChannel):
    """``Storage`` on PostgreSQL; safe to share between replicas.

    One class per group of records (``agents``, ``runs``, ``queue``) over a shared pool,
    migrations and LISTEN connection (``base``), so each module stays one responsibility.
    """


__all__ = ["PostgresStorage"]

# Every public store method answers StorageError while PostgreSQL is unreachable.
for _name in {n for klass in PostgresStorage.__mro__[:-1] for n in vars(klass)}:
    if _name.startswith("_") or _name in ("open", "close", "set_queue_listener"):
        continue
    _attr = getattr(PostgresStorage, _name)
    if callable(_attr) and getattr(_attr, "__code__", None) and _attr.__code__.co_flags & 0x80:
        setattr(PostgresStorage, _name, _guard(_attr))
