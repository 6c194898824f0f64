"""Concurrency limits: at most N tasks of a capability running at once, and at most N running
runs of a workflow, across every replica sharing the store.

A limit is a pool of N slots kept as one store document (the holders' ids); taking and giving
back a slot is a compare-and-set of that document, so two replicas never both take the last
one. Holders that no longer run (a replica died before giving its slot back) are found by the
sweep and released, so a crash cannot shrink a limit for good.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime

from ..errors import NotFoundError
from ..models import CapabilityLimit, Page, TaskRun
from ..observe.logs import log_operation
from ..storage.base import Storage
from ..storage.change import ContendedError, change_document

SLOTS = "slots"
LIMIT = "limit"
CACHE_SECONDS = 1.0
RECONCILE_SECONDS = 10.0
_ATTEMPTS = 50  # compare-and-set retries under contention before a slot counts as taken
logger = logging.getLogger("opscore.limits")


class SlotPools:
    """Named pools of slots in the store."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    async def holders(self, pool: str) -> list[str]:
        raw = await self.storage.get_document(SLOTS, pool)
        return list(json.loads(raw)) if raw else []

    async def acquire(self, pool: str, holder: str, limit: int | None) -> bool:
        """Take a slot for ``holder`` (True if it already has one); False when ``limit``
        holders have one. ``limit`` None takes one whatever the count (a re-driven run)."""

        def take(raw: str | None) -> str | None:
            held: list[str] = json.loads(raw) if raw else []
            if holder in held or (limit is not None and len(held) >= limit):
                return None
            return json.dumps([*held, holder])

        try:
            stored = await change_document(self.storage, SLOTS, pool, take, attempts=_ATTEMPTS)
        except ContendedError:
            return False  # contended this long: the slot counts as taken
        return stored is not None and holder in json.loads(stored)

    async def release(self, pool: str, holders: Collection[str]) -> None:
        """Give back the slots of ``holders`` (those without one are ignored)."""

        def drop(raw: str | None) -> str | None:
            held: list[str] = json.loads(raw) if raw else []
            kept = [h for h in held if h not in holders]
            return None if len(kept) == len(held) else json.dumps(kept)

        try:
            await change_document(self.storage, SLOTS, pool, drop, attempts=_ATTEMPTS)
        except ContendedError:
            logger.warning("slots not released after retries", extra={"pool": pool})


class CapabilityLimits:
    """At most N tasks of a capability dispatched or running at once."""

    def __init__(self, storage: Storage, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.storage = storage
        self.pools = SlotPools(storage)
        self.clock = clock
        # is this task still dispatched or running? (set by the container: the workflow knows)
        self.in_flight: Callable[[str], Awaitable[bool]] | None = None
        self._cache: dict[str, int] = {}
        self._read_at = float("-inf")
        self._reconciled_at = float("-inf")

    async def limits(self) -> dict[str, int]:
        """Capability -> most running at once (read at most once a second)."""
        if self.clock() - self._read_at > CACHE_SECONDS:
            page = await self.storage.list_documents(LIMIT, offset=0, limit=10_000)
            found = [CapabilityLimit.model_validate_json(d) for d in page.items]
            self._cache = {f.capability: f.max_running for f in found}
            self._read_at = self.clock()
        return self._cache

    async def acquire(self, task: TaskRun) -> bool:
        """Take the task's capability slot; True when its capability has no limit."""
        capability = task.agent_capability
        if capability is None:
            return True
        limit = (await self.limits()).get(capability)
        if limit is None:
            return True
        return await self.pools.acquire(_pool(capability), task.task_id, limit)

    async def release(self, task: TaskRun) -> None:
        """The task is no longer running: give its capability slot back."""
        capability = task.agent_capability
        if capability is not None and capability in await self.limits():
            await self.pools.release(_pool(capability), [task.task_id])

    # --- managing limits -----------------------------------------------------------------
    async def set_limit(self, capability: str, max_running: int) -> CapabilityLimit:
        limit = CapabilityLimit(capability=capability, max_running=max_running)
        await self.storage.put_document(LIMIT, capability, limit.model_dump_json(), due_at=None)
        self._read_at = float("-inf")
        log_operation("limit.set", {"capability": capability, "maxRunning": max_running})
        return await self.describe(limit)

    async def remove_limit(self, capability: str) -> None:
        if not await self.storage.delete_document(LIMIT, capability):
            raise NotFoundError(f"No limit on capability '{capability}'", code="LIMIT_NOT_FOUND")
        await self.storage.delete_document(SLOTS, _pool(capability))
        self._read_at = float("-inf")
        log_operation("limit.removed", {"capability": capability})

    async def list_limits(self) -> Page[CapabilityLimit]:
        self._read_at = float("-inf")  # a read here always sees the store
        items = [
            await self.describe(CapabilityLimit(capability=c, max_running=n))
            for c, n in sorted((await self.limits()).items())
        ]
        return Page(items=items, total=len(items), offset=0, limit=max(len(items), 1))

    async def describe(self, limit: CapabilityLimit) -> CapabilityLimit:
        holders = await self.pools.holders(_pool(limit.capability))
        return limit.model_copy(update={"running": len(holders)})

    async def sweep(self, now: datetime) -> None:
        """Every few seconds: release slots whose task no longer runs (its replica died, or
        it ended on a replica that had not seen the limit yet)."""
        if self.in_flight is None or self.clock() - self._reconciled_at < RECONCILE_SECONDS:
            return
        self._reconciled_at = self.clock()
        for capability in await self.limits():
            pool = _pool(capability)
            gone = [h for h in await self.pools.holders(pool) if not await self.in_flight(h)]
            if gone:
                await self.pools.release(pool, gone)
                log_operation(
                    "limit.slots_reclaimed", {"capability": capability, "tasks": len(gone)}
                )


def _pool(capability: str) -> str:
    return f"capability:{capability}"
