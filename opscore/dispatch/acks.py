"""What a dispatch pass acknowledges: the queue entries it handed over or dropped.

Acknowledged as the pass ends, together with the loop's question of how long it may sleep
(``Storage.ack_and_next_ready``: one PostgreSQL statement, one Redis round trip, one SQLite
transaction, where they were two), or alone when the next pass follows at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from ..storage.base import Storage


class PassAcks:
    """The entries of the passes not yet acknowledged, and the store's last answer to when
    the earliest delayed entry becomes ready."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._ids: list[str] = []
        self.next_ready: datetime | None = None  # how long the loop may sleep, at most

    def add(self, task_ids: Iterable[str]) -> None:
        self._ids += task_ids

    async def settle(self, now: datetime, *, busy: bool) -> None:
        """Acknowledge what is pending; unless ``busy`` (the next pass follows at once), ask
        for the next ready time in the same call. What the store could not take stays
        pending (still leased) for the next pass."""
        ids, self._ids = self._ids, []
        try:
            if not busy:
                self.next_ready = await self.storage.ack_and_next_ready(ids, now)
            elif ids:
                await self.storage.ack(ids)
        except BaseException:
            self._ids = ids + self._ids
            raise
