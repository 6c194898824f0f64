"""PostgresStorage: the channel replicas share logs, spans and liveness through (one table).

Ids come from a sequence, and a row with a smaller id may commit after a larger one; a reader
therefore reads from a little before its cursor again (``LOOKBACK``) and passes over the ids it
has seen (``_seen_ids``), so no entry is skipped because another replica committed late.
"""

from __future__ import annotations

from .base import _Base
from .upkeep import TELEMETRY

KEEP = 20_000
LOOKBACK = 500
# The reader's own rows come back without their data, so that the cursor still moves past
# them (the parameter that names the reader is the query's last).
NEWEST = (
    "SELECT id, origin, kind, CASE WHEN origin = $2 THEN NULL ELSE data END"
    " FROM opscore_telemetry ORDER BY id DESC LIMIT $1"
)
AFTER = (
    "SELECT id, origin, kind, CASE WHEN origin = $3 THEN NULL ELSE data END"
    " FROM opscore_telemetry WHERE id > $1 ORDER BY id LIMIT $2"
)


class TelemetryChannel(_Base):
    async def publish_telemetry(self, origin: str, entries: list[tuple[str, str]]) -> None:
        if not entries:
            return
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO opscore_telemetry (origin, kind, data) "
                "SELECT $1, k, d FROM unnest($2::text[], $3::text[]) AS e(k, d)",
                origin,
                [kind for kind, _ in entries],
                [data for _, data in entries],
            )
            await conn.execute(
                "DELETE FROM opscore_telemetry WHERE id < "
                "(SELECT max(id) FROM opscore_telemetry) - $1",
                KEEP,
            )
        self._vacuums.left(TELEMETRY, len(entries))  # trimmed as many, in time

    async def read_telemetry(
        self, after: str | None, limit: int, *, passing_over: str | None = None
    ) -> tuple[str | None, list[tuple[str, str, str, str]]]:
        async with self._conn() as conn:
            if after is None:
                rows = list(
                    reversed(
                        await conn.fetch(
                            NEWEST,
                            limit,
                            passing_over,
                        )
                    )
                )
            else:
                rows = await conn.fetch(
                    AFTER,
                    max(int(after) - LOOKBACK, 0),
                    limit + LOOKBACK,
                    passing_over,
                )
        entries = []
        newest = int(after) if after else None
        for row in rows:
            if row[0] in self._seen_set:
                continue
            self._seen_set.add(row[0])
            self._seen_ids.append(row[0])
            newest = row[0] if newest is None else max(newest, row[0])
            if row[3] is not None:  # not the reader's own
                entries.append((str(row[0]), row[1], row[2], row[3]))
        while len(self._seen_ids) > 4 * (LOOKBACK + limit):
            self._seen_set.discard(self._seen_ids.popleft())
        return (str(newest) if newest is not None else "0"), entries
