"""RedisStorage: the channel replicas share logs, spans and liveness through (one stream).

A publish adds one stream entry per batch of at most ``TELEMETRY_BATCH`` records (``b``: a
JSON list of [kind, data]), all in one round trip: a replica ships its records every 0.2 s,
and one XADD per batch instead of one per record took the channel from about 21 commands per
three-step workflow to a fraction of one (``python -m bench.stores``). The stream keeps about
the newest ``TELEMETRY_KEEP`` batches, so the records it holds are bounded too (a batch of
whatever one publish brought held up to 1,000 records: 15 MB after 2,000 workflows, and
hundreds at the 2,000 batches kept then). Entries written one record each (``k``, ``d``) by an
older replica are still read.
"""

from __future__ import annotations

import orjson

from ..base import TELEMETRY_KEEP, telemetry_batches
from .base import _Base


class TelemetryChannel(_Base):
    async def publish_telemetry(self, origin: str, entries: list[tuple[str, str]]) -> None:
        if not entries:
            return
        key = self.k("telemetry")
        async with self._redis.pipeline(transaction=False) as pipe:
            for batch in telemetry_batches(entries):
                pipe.xadd(key, {"o": origin, "b": batch}, maxlen=TELEMETRY_KEEP)
            await pipe.execute()

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
