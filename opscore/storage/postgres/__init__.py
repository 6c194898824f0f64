"""Shared store on PostgreSQL (``postgresql://user:password@host:port/database``), for
several Ops-Core replicas; see ``base`` for how it stays atomic and wakes every replica."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from ...errors import NoFreeSlotError
from ...models import TaskRun
from ..guard import guard_methods
from ..report_and_task import TaskUpdate, TaskWritten
from ..rules import slot_taken
from .claims import SlotClaims
from .documents import DocumentRecords
from .queue import QueueRecords
from .reports import ReportRecords
from .runs import RunRecords
from .telemetry import TelemetryChannel


class PostgresStorage(
    ReportRecords, SlotClaims, RunRecords, QueueRecords, DocumentRecords, TelemetryChannel
):
    """``Storage`` on PostgreSQL; safe to share between replicas.

    One class per group of records (``agents``, ``runs``, ``queue``) over a shared pool,
    migrations and LISTEN connection (``base``), so each module stays one responsibility.
    """

    async def update_task(
        self,
        task_id: str,
        changes: dict[str, Any],
        *,
        expect: Collection[str] | None = None,
        attempt: int | None = None,
        enqueue_at: datetime | None = None,
        release_slot_of: str | None = None,
        claim_slot_of: str | None = None,
        ack_entry: bool = False,
    ) -> TaskRun | None:
        """One statement (``RunRecords._update_task``); with ``release_slot_of``, the slot
        is freed right after, and only then the task queued: never claimable while its old
        attempt still holds a slot; with ``claim_slot_of``, the slot is taken just before,
        and given back when the change does not apply (``Storage.update_task``); with
        ``ack_entry``, the queue entry is acknowledged in the claim's statement, else right
        after."""
        if claim_slot_of is not None and release_slot_of is None and enqueue_at is None:
            # the dispatcher's hand-over: one statement (claims.py)
            return await self._claim_and_move(
                task_id, changes, claim_slot_of, expect=expect, attempt=attempt, ack=ack_entry
            )
        changed = await self._change_task(
            task_id, changes, expect, attempt, enqueue_at, release_slot_of, claim_slot_of
        )
        if changed is not None and ack_entry:
            await self.ack([task_id])
        return changed

    async def _change_task(
        self,
        task_id: str,
        changes: dict[str, Any],
        expect: Collection[str] | None,
        attempt: int | None,
        enqueue_at: datetime | None,
        release_slot_of: str | None,
        claim_slot_of: str | None,
    ) -> TaskRun | None:
        """``update_task`` but for the dispatcher's one statement and the ack."""
        if claim_slot_of is not None:
            # the rule of the other stores (slot_taken: full or gone raises NoFreeSlotError)
            taken = await self._change_agent(claim_slot_of, lambda a: slot_taken(a, task_id))
            if taken is None:
                raise NoFreeSlotError(f"No agent '{claim_slot_of}' to take task '{task_id}'")
            changed = await self._change_task(
                task_id, changes, expect, attempt, enqueue_at, release_slot_of, None
            )
            if changed is None:
                await self.release_agent_slot(claim_slot_of, task_id)
            return changed
        if release_slot_of is None:
            return await self._update_task(
                task_id, changes, expect=expect, attempt=attempt, enqueue_at=enqueue_at
            )
        updated = await self._update_task(task_id, changes, expect=expect, attempt=attempt)
        if updated is not None:
            await self.release_agent_slot(release_slot_of, task_id)
            if enqueue_at is not None:
                await self.enqueue(task_id, priority=updated.priority, ready_at=enqueue_at)
        return updated

    async def update_task_and_next(self, task_id: str, update: TaskUpdate) -> TaskWritten:
        """The task and what follows it (the next step, or the run completed) in one
        statement (``completions.py``; the task alone when this process has no sight of
        that row); the slot freed right after, as ``update_task``."""
        if update.then is None and update.ends_run is None:
            changed = await self.update_task(
                task_id,
                update.changes,
                expect=update.expect,
                attempt=update.attempt,
                release_slot_of=update.release_slot_of,
            )
            return TaskWritten(changed)
        changed, queued, ended = await self._change_and_what_follows(task_id, update)
        if changed is not None and update.release_slot_of is not None:
            await self.release_agent_slot(update.release_slot_of, task_id)
        return TaskWritten(changed, queued, ended)


__all__ = ["PostgresStorage"]


def _postgres_errors() -> tuple[type[BaseException], ...]:
    import asyncpg

    # InternalClientError: a connection left mid-operation (``_Base._conn`` closes it)
    return (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
    )


# Every public store method answers StorageError while PostgreSQL is unreachable.
guard_methods(
    PostgresStorage, _postgres_errors, "PostgreSQL", skip=("open", "close", "set_queue_listener")
)
