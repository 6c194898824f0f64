"""Shared plumbing: the client, key names, Lua scripts, compare-and-set and the outage guard.

Shared store on Redis (``redis://host:port/db``), for several Ops-Core replicas.

Each record is a JSON string under its own key; compare-and-set methods use WATCH/MULTI
(optimistic transactions, retried on conflict), so they are atomic across replicas. The queue
is three sorted sets (delayed, ready, leased) moved by Lua scripts: a claimed entry is leased,
and if the replica that claimed it dies before acknowledging it, the lease expires and another
replica's dispatcher gets it. Turn on Redis's append-only file for durability.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from ...errors import OpsCoreError, StorageError
from ...models import (
    Page,
)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
LEASE = timedelta(seconds=30)
_SEQ_SPAN = 2**41  # FIFO sequence room under each priority in one float score
_INFLIGHT = {"dispatched", "running"}

_DEQUEUE = """
local function back_to_ready(id)
  local meta = redis.call('HGET', KEYS[4], id)
  if meta then
    local score = string.sub(meta, 1, string.find(meta, '|') - 1)
    redis.call('ZADD', KEYS[2], score, id)
  end
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[1], id)
  back_to_ready(id)
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])) do
  redis.call('ZREM', KEYS[3], id)
  back_to_ready(id)
end
local popped = redis.call('ZPOPMIN', KEYS[2], ARGV[3])
local out = {}
for i = 1, #popped, 2 do
  local id = popped[i]
  redis.call('ZADD', KEYS[3], ARGV[2], id)
  table.insert(out, id)
  table.insert(out, redis.call('HGET', KEYS[4], id) or '')
end
return out
"""

_ACK = """
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[3], id) == 1 and not redis.call('ZSCORE', KEYS[1], id)
     and not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('HDEL', KEYS[4], id)
  end
end
return 1
"""

_REQUEUE = """
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[3], id) == 1 then
    local meta = redis.call('HGET', KEYS[4], id)
    if meta then
      redis.call('ZADD', KEYS[2], string.sub(meta, 1, string.find(meta, '|') - 1), id)
    end
  end
end
return 1
"""


def _load(model: type[M], raw: str | None) -> M | None:
    return model.model_validate_json(raw) if raw is not None else None


def _page(items: list[M], offset: int, limit: int) -> Page[M]:
    return Page(items=items[offset : offset + limit], total=len(items), offset=offset, limit=limit)


def _guard(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """Driver errors become StorageError (503), domain errors pass through."""

    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> R:
        from redis.exceptions import RedisError

        try:
            return await method(*args, **kwargs)
        except OpsCoreError:
            raise
        except (RedisError, OSError) as exc:
            raise StorageError(f"Redis unavailable: {exc}") from exc

    return wrapper


class _Base:
    """``Storage`` on Redis; safe to share between replicas."""

    def __init__(self, url: str, *, prefix: str = "opscore:") -> None:
        self.url = url
        self.p = prefix
        self._redis: Any = None
        self._scripts: dict[str, Any] = {}

    def k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    @property
    def _queue_keys(self) -> list[str]:
        return [
            self.k("q", "delayed"),
            self.k("q", "ready"),
            self.k("q", "leased"),
            self.k("q", "meta"),
        ]

    async def open(self) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self.url, decode_responses=True, health_check_interval=30)
        try:
            await self._redis.ping()
        except Exception as exc:
            raise StorageError(f"Cannot reach Redis at {self.url}: {exc}") from exc
        for name, source in (("dequeue", _DEQUEUE), ("ack", _ACK), ("requeue", _REQUEUE)):
            self._scripts[name] = self._redis.register_script(source)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def ping(self) -> None:
        await self._redis.ping()

    async def _cas(
        self,
        key: str,
        decide: Callable[[str | None], tuple[str | None, R, Callable[[Any], None] | None]],
    ) -> R:
        """Optimistic read-modify-write of one key. ``decide(raw)`` returns (new raw value or
        None to leave it, the result, extra pipeline ops or None)."""
        from redis.exceptions import WatchError

        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    new, result, extra = decide(raw)
                    if new is None and extra is None:
                        await pipe.unwatch()
                        return result
                    pipe.multi()
                    if new is not None:
                        pipe.set(key, new)
                    if extra is not None:
                        extra(pipe)
                    await pipe.execute()
                    return result
                except WatchError:
                    continue

    async def _next(self, name: str) -> int:
        return int(await self._redis.incr(self.k("seq", name)))
