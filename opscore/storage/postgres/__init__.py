"""Shared store on PostgreSQL (``postgresql://user:password@host:port/database``), for
several Ops-Core replicas; see ``base`` for how it stays atomic and wakes every replica."""

from __future__ import annotations

from ..guard import guard_methods
from .agents import AgentRecords
from .documents import DocumentRecords
from .queue import QueueRecords
from .runs import RunRecords
from .telemetry import TelemetryChannel


class PostgresStorage(AgentRecords, RunRecords, QueueRecords, DocumentRecords, TelemetryChannel):
    """``Storage`` on PostgreSQL; safe to share between replicas.

    One class per group of records (``agents``, ``runs``, ``queue``) over a shared pool,
    migrations and LISTEN connection (``base``), so each module stays one responsibility.
    """


__all__ = ["PostgresStorage"]


def _postgres_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    return (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


# Every public store method answers StorageError while PostgreSQL is unreachable.
guard_methods(
    PostgresStorage, _postgres_errors, "PostgreSQL", skip=("open", "close", "set_queue_listener")
)
