"""RedisStorage: the channel replicas share logs, spans and liveness through (one stream).

One stream entry per publish, holding the whole batch (``b``: a JSON list of [kind, data]):
a replica ships its records every 0.2 s, and one XADD per batch instead of one per record took
the channel from about 21 commands per three-step workflow to a fraction of one
(``python -m bench.stores``). Entries written one record each (``k``, ``d``) by an older
replica are still read.
"""

from __future__ import annotations

import orjson

from .base import _Base

KEEP = 2_000  # batches (each up to a ship's worth of records); about the newest 20,000 records


class TelemetryChannel(_Base):
    async def publish_telemetry(self, origin: str, entries: list[tuple[str, str]]) -> None:
        if not entries:
            return
        batch = orjson.dumps([[kind, data] for kind, data in entries])
        await self._redis.xadd(
            self.k("telemetry"), {"o": origin, "b": batch}, maxlen=KEEP, approximate=True
        )

    async def read_telemetry(
        self, after: str | None, limit: int, *, passing_over: str | None = None
    ) -> tuple[str | None, list[tuple[str, str, str, str]]]:
        key = self.k("telemetry")
        if after is None:
            rows = list(reversed(await self._redis.xrevrange(key, count=limit)))
        else:
            rows = await self._redis.xrange(key, min=f"({after}", count=limit)
        entries: list[tuple[str, str, str, str]] = []
        for entry_id, fields in rows:
            origin = fields["o"]
            if origin == passing_over:
                continue
            if "b" in fields:
                entries += [
                    (entry_id, origin, kind, data) for kind, data in orjson.loads(fields["b"])
                ]
            else:  # one record per entry, as replicas before batching wrote them
                entries.append((entry_id, origin, fields["k"], fields["d"]))
        return (rows[-1][0] if rows else after or "0-0"), entries
