"""Values read along with a write, kept for a read of the same call chain; and a step
leased with the write that queued it, handed to the dispatcher (``claims.py``)."""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

from ...models import QueueEntry
from ..base import Claimant
from ..fleet import FleetView
from ..seen import Seen
from .claims import ClaimRead

# values read along with a write serve a read of the same call chain this soon after at most
ALONG_SECONDS = 0.5
# key -> (its value, when read); a list of ids read along keeps the ids as a tuple
Along = dict[str, tuple[str | tuple[str, ...] | None, float]]
ALONG: ContextVar[Along | None] = ContextVar("opscore_redis_read_along", default=None)


class ReadsAlong:
    """What a compare-and-set's script read after its writes (``Ops.read``,
    ``Ops.read_records``, ``Ops.claim``), put where the reads it spares will look."""

    _seen: Seen
    _fleet: FleetView
    _claimant: Claimant | None

    def k(self, *parts: str) -> str:
        raise NotImplementedError

    def set_claimant(self, claimant: Claimant | None) -> None:
        self._claimant = claimant

    def _claimed(self, taken: tuple[QueueEntry, list[tuple[str, str]]] | None) -> None:
        """A step leased with the write that queued it, handed to the claimant with the
        fleet read after that write (``claims.py``); each agent's record is remembered as a
        guess for the hand-over's slot claim. With no claimant left (its dispatcher stopped
        meanwhile) the entry waits out its lease, as one a replica died holding."""
        if taken is None or self._claimant is None:
            return
        entry, rows = taken
        if self._seen.has_room_for(len(rows)):
            for agent_id, raw in rows:
                self._seen.put(self.k("agent", agent_id), raw)
        self._claimant.take_claimed([entry], self._fleet.agents(rows))

    def _read_along(self, reads: list[str | tuple[str, str] | ClaimRead], raws: list[Any]) -> None:
        """Keep values read along with a write, for one ``_get_soon`` (or, for a session's
        tasks, ``_along_records``) of the same call chain."""
        along = ALONG.get()
        if along is None:
            along = {}
            ALONG.set(along)
        now = time.monotonic()
        # a long-lived chain (a sweep's loop) may never read what it read along: keep only
        # what is still fresh enough to be used
        for stale in [k for k, (_, at) in along.items() if now - at >= ALONG_SECONDS]:
            del along[stale]
        values = iter(raws)
        for read in reads:
            if isinstance(read, ClaimRead):
                self._claimed(read.taken(values))
                continue
            if isinstance(read, str):
                value = next(values) or None
                self._seen.put(read, value)
                along[read] = (value, now)
                continue
            ids_key, prefix = read
            count = int(next(values))
            if count < 0:  # more records than were worth reading along
                continue
            ids = []
            for _ in range(count):
                record_id, raw = next(values), next(values) or None
                ids.append(record_id)
                self._seen.put(prefix + record_id, raw)
                along[prefix + record_id] = (raw, now)
            along[ids_key] = (tuple(ids), now)

    def _along_records(
        self, keys: list[str], ids_key: str, prefix: str
    ) -> tuple[list[str | None], list[str]] | None:
        """``keys``' values and the records the list ``ids_key`` names, as read along with a
        write of this call chain a moment ago, if every one is still what this process last
        saw (it wrote none of them since); else None, and a read asks Redis. Used once."""
        along = ALONG.get()
        if not along or ids_key not in along:
            return None
        now = time.monotonic()
        ids_kept = along.pop(ids_key)
        kept = [along.pop(key, None) for key in keys]
        ids, at = ids_kept
        if not isinstance(ids, tuple) or now - at >= ALONG_SECONDS:
            return None
        records: list[str] = []
        for record_id in ids:
            found = along.pop(prefix + record_id, None)
            if found is None or self._seen.get(prefix + record_id) != found[0]:
                return None
            if isinstance(found[0], str):  # a record gone meanwhile is left out, as a read would
                records.append(found[0])
        values: list[str | None] = []
        for key, found in zip(keys, kept, strict=True):
            if found is None or self._seen.get(key) != found[0] or isinstance(found[0], tuple):
                return None
            values.append(found[0])
        return values, records
