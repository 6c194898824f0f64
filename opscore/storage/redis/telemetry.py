"""RedisStorage: the channel replicas share logs, spans and liveness through (one stream)."""

from __future__ import annotations

from .base import _Base

KEEP = 20_000


class TelemetryChannel(_Base):
    async def publish_telemetry(self, origin: str, entries: list[tuple[str, str]]) -> None:
        if not entries:
            return
        key = self.k("telemetry")
        async with self._redis.pipeline(transaction=False) as pipe:
            for kind, data in entries:
                pipe.xadd(key, {"o": origin, "k": kind, "d": data}, maxlen=KEEP, approximate=True)
            await pipe.execute()

    async def read_telemetry(
        self, after: str | None, limit: int
    ) -> tuple[str | None, list[tuple[str, str, str, str]]]:
        key = self.k("telemetry")
        if after is None:
            rows = list(reversed(await self._redis.xrevrange(key, count=limit)))
        else:
            rows = await self._redis.xrange(key, min=f"({after}", count=limit)
        entries = [(entry_id, f["o"], f["k"], f["d"]) for entry_id, f in rows]
        return (entries[-1][0] if entries else after or "0-0"), entries
