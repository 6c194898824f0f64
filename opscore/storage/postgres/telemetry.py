"""PostgresStorage: the channel replicas share logs, spans and liveness through (one table).

One row per publish, holding the whole batch (kind ``batch``: a JSON list of [kind, data]), as
on Redis: a replica ships its records every 0.2 s, and a row each was some 21 rows per
three-step workflow inserted, trimmed and vacuumed, 0.24 ms of the server's time per workflow
(``bench.pg_statements --inside``). Rows written one record each by an older replica are
still read.

Ids come from a sequence, and a row with a smaller id may commit after a larger one; a reader
therefore reads from a little before its cursor again (``LOOKBACK``) and passes over the ids it
has seen (``_seen_ids``), so no entry is skipped because another replica committed late. The
rows it has seen come back without their data.
"""

from __future__ import annotations

import orjson

from .base import _Base
from .upkeep import TELEMETRY

KEEP = 2_000  # batches (each up to a ship's worth of records); about the newest 20,000 records
LOOKBACK = 100  # batches: late commits are milliseconds late, a replica ships every 0.2 s
# The reader's own rows come back without their data, so that the cursor still moves past
# them (the parameter that names the reader follows the limit).
NEWEST = (
    "SELECT id, origin, kind, CASE WHEN origin = $2 THEN NULL ELSE data END"
    " FROM opscore_telemetry ORDER BY id DESC LIMIT $1"
)
# ... and the rows it has already seen ($4) without theirs either.
AFTER = (
    "SELECT id, origin, kind, CASE WHEN origin = $3 OR id = ANY($4::bigint[]) THEN NULL"
    " ELSE data END FROM opscore_telemetry WHERE id > $1 ORDER BY id LIMIT $2"
)
# One batch in, and the batches past the newest KEEP out, in one statement.
_PUBLISH = """
WITH added AS (
    INSERT INTO opscore_telemetry (origin, kind, data) VALUES ($1, 'batch', $2) RETURNING id)
DELETE FROM opscore_telemetry WHERE id < (SELECT id FROM added) - $3
"""


class TelemetryChannel(_Base):
    async def publish_telemetry(self, origin: str, entries: list[tuple[str, str]]) -> None:
        if not entries:
            return
        batch = orjson.dumps([[kind, data] for kind, data in entries]).decode()
        async with self._conn() as conn:
            await conn.execute(_PUBLISH, origin, batch, KEEP)
        self._vacuums.left(TELEMETRY)  # a row now, trimmed later

    async def read_telemetry(
        self, after: str | None, limit: int, *, passing_over: str | None = None
    ) -> tuple[str | None, list[tuple[str, str, str, str]]]:
        async with self._conn() as conn:
            if after is None:
                rows = list(reversed(await conn.fetch(NEWEST, limit, passing_over)))
            else:
                start = max(int(after) - LOOKBACK, 0)
                seen = [i for i in self._seen_ids if i > start]
                rows = await conn.fetch(AFTER, start, limit + LOOKBACK, passing_over, seen)
        entries: list[tuple[str, str, str, str]] = []
        newest = int(after) if after else None
        for row_id, origin, kind, data in rows:
            if row_id in self._seen_set:
                continue
            self._seen_set.add(row_id)
            self._seen_ids.append(row_id)
            newest = row_id if newest is None else max(newest, row_id)
            if data is None:  # the reader's own
                continue
            if kind == "batch":
                entries += [(str(row_id), origin, k, d) for k, d in orjson.loads(data)]
            else:  # one record per row, as replicas before batching wrote them
                entries.append((str(row_id), origin, kind, data))
        while len(self._seen_ids) > 4 * (LOOKBACK + limit):
            self._seen_set.discard(self._seen_ids.popleft())
        return (str(newest) if newest is not None else "0"), entries
