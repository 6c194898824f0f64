"""Retention: finished runs, with their tasks and dead letters, do not stay for ever.

On every store: a finished run (completed, failed or cancelled) is removed once it finished more
than ``OPSCORE_RETENTION_SECONDS`` ago, or once ``OPSCORE_SESSION_RETENTION`` newer finished runs
exist. A sweep applies it every ``OPSCORE_RETENTION_INTERVAL``; operators can purge now
(``POST /v1/opscore/admin/purge``, ``opscore purge``). Running runs are never removed.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from ..models import PurgeResult
from ..observe.logs import log_operation
from .engine import WorkflowEngine

_BATCH = 500
# at most this many batches a sweep, so one sweep never holds the store for long
_BATCHES_PER_SWEEP = 20


class Retention:
    """Prunes finished runs by age and count; a sweep of the dispatcher's loop."""

    def __init__(self, engine: WorkflowEngine) -> None:
        self.engine = engine
        self._last: datetime | None = None

    async def sweep(self, now: datetime) -> None:
        """Apply the retention settings, at most once per ``OPSCORE_RETENTION_INTERVAL``."""
        settings = self.engine.settings
        if self._last is not None and now - self._last < timedelta(
            seconds=settings.retention_interval
        ):
            return
        self._last = now
        age = settings.retention_seconds
        await self._prune(
            finished_before=now - timedelta(seconds=age) if age else None,
            keep=settings.session_retention,
            batches=_BATCHES_PER_SWEEP,
            why="retention",
        )

    async def purge(self, *, older_than_seconds: float | None, keep: int | None) -> PurgeResult:
        """An operator's purge: finished runs older than the given age, or beyond ``keep``."""
        settings = self.engine.settings
        now = self.engine.clock()
        before = (
            now - timedelta(seconds=older_than_seconds) if older_than_seconds is not None else None
        )
        removed = await self._prune(
            finished_before=before,
            keep=keep if keep is not None else settings.session_retention,
            batches=None,
            why="purge",
        )
        return PurgeResult(removed=removed, finished_before=before, kept_newest=keep)

    async def _prune(
        self, *, finished_before: datetime | None, keep: int, batches: int | None, why: str
    ) -> int:
        removed = done = 0
        while batches is None or done < batches:
            count = await self.engine.storage.prune_finished(
                finished_before=finished_before, keep=keep, batch=_BATCH
            )
            removed += count
            done += 1
            if count < _BATCH:
                break
        if removed:
            log_operation(
                "retention.pruned",
                {"sessions": removed, "reason": why},
                logger="opscore.retention",
                level=logging.INFO,
            )
        return removed
