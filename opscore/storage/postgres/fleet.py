"""The fleet read as what changed since the last read, on PostgreSQL.

The dispatcher reads the available agents at every pass that has work. Each read was every
available agent's row: 10,000 idle agents cost 25-30 ms and megabytes of rows at every
pass, though a pass changes a few agents at most. A read now asks for the rows written since
the last read began, and the view of the fleet (``storage/fleet.py``) answers for the rest.

"Written since" is told by PostgreSQL's own bookkeeping, so no trigger, column or migration
is needed and a replica of an earlier version writing beside this one is read all the same:

- every row version carries the id of the transaction that wrote it (``xmin``);
- a read takes, with its rows and from the same snapshot, that snapshot's horizon
  (``pg_snapshot_xmin(pg_current_snapshot())``): the oldest transaction still running. A
  transaction that had not committed when the read began has an id at or above it, whatever
  order ids and commits come in, so the next read asks for the rows whose ``xmin`` is at or
  above it (compared by ``age``, which stays right across the wraparound of 32-bit ids).
  A transaction that runs long anywhere on the cluster holds the horizon back: reads then
  bring back more rows than changed, never fewer;
- a deleted row leaves nothing to read, so each read also counts the rows: when the view
  holds more agents than the table, an agent was deleted, and the fleet is read whole.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..fleet import FleetView
from ..seen import Seen

XID = 0xFFFFFFFF  # a horizon (64-bit, with its epoch) as the 32-bit id that rows carry
# $1: the last read's horizon, or NULL for every agent. The changed rows, and one row (its
# agent_id NULL, in no particular place: a parallel plan may put it anywhere) of the count of
# all rows and this read's horizon, from one snapshot
SINCE = """
WITH changed AS (
    SELECT agent_id, doc FROM opscore_agents
    WHERE $1::xid IS NULL OR age(xmin) <= age($1::xid))
SELECT agent_id, doc, NULL::bigint, NULL::text FROM changed
UNION ALL
SELECT NULL, NULL, (SELECT count(*) FROM opscore_agents),
    pg_snapshot_xmin(pg_current_snapshot())::text
"""


def _meta(rows: list[Any]) -> Any:
    """The row of a read that holds the count and the horizon (the one with no agent)."""
    return next(r for r in reversed(rows) if r[0] is None)


class FleetSince:
    """Reads of the fleet since the last one, one at a time (each applied to the view
    before the next begins, so the view never goes back to an older row)."""

    def __init__(self) -> None:
        self.horizon: int | None = None  # None: the next read reads every agent
        self.lock = asyncio.Lock()

    async def read(
        self,
        connect: Callable[[], AbstractAsyncContextManager[Any]],
        seen: Seen,
        view: FleetView,
    ) -> None:
        """``view`` brought up to date: the rows written since the last read applied to it,
        each remembered in ``seen`` as a guess for the slot claim that may follow."""
        async with self.lock, connect() as conn:
            rows = await conn.fetch(SINCE, self.horizon)
            if not self._apply(rows, seen, view, whole=self.horizon is None):
                rows = await conn.fetch(SINCE, None)  # an agent was deleted since: read all
                self._apply(rows, seen, view, whole=True)
            self.horizon = int(_meta(rows)[3]) & XID

    @staticmethod
    def _apply(rows: list[Any], seen: Seen, view: FleetView, *, whole: bool) -> bool:
        """Whether the view, with ``rows`` applied, holds as many agents as the table."""
        changed, total = [r for r in rows if r[0] is not None], _meta(rows)[2]
        if seen.has_room_for(len(changed)):
            for agent_id, doc, _, _ in changed:
                seen.put(f"agent:{agent_id}", doc)
        pairs = ((r[0], r[1]) for r in changed)
        if whole:
            view.agents(pairs)
        else:
            view.changed(pairs)
        return len(view) == total
