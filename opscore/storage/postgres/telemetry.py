"""PostgresStorage: the channel replicas share logs, spans and liveness through (one table).

A publish inserts one row per batch of at most ``TELEMETRY_BATCH`` records (kind ``batch``: a
JSON list of [kind, data]), in one statement, as on Redis: a replica ships its records every
0.2 s, and a row each was some 21 rows per three-step workflow inserted, trimmed and vacuumed,
0.24 ms of the server's time per workflow (``bench.pg_statements --inside``). About the newest
``TELEMETRY_KEEP`` rows are kept. Rows written one record each by an older replica are still
read.

Ids come from a sequence, and a row with a smaller id may commit after a larger one; a reader
therefore reads from a little before its cursor again (``LOOKBACK``) and passes over the ids it
has seen (``_seen_ids``), so no entry is skipped because another replica committed late. The
rows it has seen come back without their data.
"""

from __future__ import annotations

import orjson

from ..base import TELEMETRY_KEEP, telemetry_batches
from .base import _Base
from .upkeep import TELEMETRY

LOOKBACK = 100  # batches: late commits are milliseconds late, a replica ships every 0.2 s
# The reader's own rows come back without their data, so that the cursor still moves past
# them (the parameter that names the reader follows the limit).
NEWEST = (
    "SELECT id, origin, kind, CASE WHEN origin = $2 THEN NULL ELSE data END"
    " FROM opscore_telemetry ORDER BY id DESC LIMIT $1"
)
# ... and the rows it has already seen ($4) without theirs either: the rows of the look back
# (ids from $1 to the cursor $5), then at most $2 past the cursor.
_COLUMNS = (
    "SELECT id, origin, kind, CASE WHEN origin = $3 OR id = ANY($4::bigint[]) THEN NULL"
    " ELSE data END FROM opscore_telemetry"
)
AFTER = (
    f"({_COLUMNS} WHERE id > $1 AND id <= $5) UNION ALL"
    f" ({_COLUMNS} WHERE id > $5 ORDER BY id LIMIT $2) ORDER BY id"
)
# The batches in (in their order), and those past the newest KEEP out, in one statement.
_PUBLISH = """
WITH added AS (
    INSERT INTO opscore_telemetry (origin, kind, data)
    SELECT $1, 'batch', batch FROM unnest($2::text[]) WITH ORDINALITY AS b (batch, n) ORDER BY n
    RETURNING id)
DELETE FROM opscore_telemetry WHERE id < (SELECT max(id) FROM added) - $3
"""


class TelemetryChannel(_Base):
    async def publish_telemetry(self, origin: str, entries: list[tuple[str, str]]) -> None:
        if not entries:
            return
        batches = [batch.decode() for batch in telemetry_batches(entries)]
        async with self._conn() as conn:
            await conn.execute(_PUBLISH, origin, batches, TELEMETRY_KEEP)
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
                rows = await conn.fetch(AFTER, start, limit, passing_over, seen, int(after))
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
