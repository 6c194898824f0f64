"""Shared plumbing: the client, key names, Lua scripts, compare-and-set and the outage guard.

Shared store on Redis (``redis://host:port/db``), for several Ops-Core replicas.

Each record is a JSON string under its own key; compare-and-set methods use WATCH/MULTI
(optimistic transactions, retried on conflict), so they are atomic across replicas. The queue
is three sorted sets (delayed, ready, leased) moved by Lua scripts: a claimed entry is leased,
and if the replica that claimed it dies before acknowledging it, the lease expires and another
replica's dispatcher gets it. Turn on Redis's append-only file for durability.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel
from redis.exceptions import NoScriptError

from ...errors import OpsCoreError, StorageError
from ...models import (
    Page,
)
from ..seen import UNSEEN, Seen
from ..urls import redacted
from .batch import CommandBatcher

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
LEASE = timedelta(seconds=30)
LANES = 4  # clients with a connection each, used in turn (see _Base._redis)
# values read along with a write serve a read of the same call chain this soon after at most
ALONG_SECONDS = 0.5
_ALONG: ContextVar[dict[str, tuple[str | None, float]] | None] = ContextVar(
    "opscore_redis_read_along", default=None
)
_SEQ_SPAN = 2**41  # FIFO sequence room under each priority in one float score
_INFLIGHT = {"dispatched", "running", "waiting"}  # what inflight_tasks returns

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
  table.insert(out, redis.call('GET', ARGV[4] .. id) or '')
end
return out
"""

_ACK = """
for _, id in ipairs(ARGV) do
  if redis.call('ZREM', KEYS[3], id) == 1 and not redis.call('ZSCORE', KEYS[1], id)
     and not redis.call('ZSCORE', KEYS[2], id) then
    redis.call('HDEL', KEYS[4], id)
    redis.call('ZREM', KEYS[5], id)
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


# Compare-and-set of one record plus its index writes, in one round trip. ARGV: the value read
# ('' when absent, else '=' .. value), '1' to write ARGV[3] or '0' to leave the record, then
# writes as <n> <command> <args...> groups; the custom ZMOVE <all> <from> <to> <member> moves a
# member between two sorted sets under its score in <all>, and READ <key> reads a key along
# (its value, or '' when absent, follows the 1 of success). Returns 0, writing nothing, when the
# record changed since it was read, with its current value. (Keys in ARGV: a standalone or Sentinel Redis, not Cluster.)
_CAS = """
local cur = redis.call('GET', KEYS[1])
local seen = cur and ('=' .. cur) or ''
if seen ~= ARGV[1] then return {0, cur} end
if ARGV[2] == '1' then redis.call('SET', KEYS[1], ARGV[3]) end
local out = {1}
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  if ARGV[i + 1] == 'READ' then
    out[#out + 1] = redis.call('GET', ARGV[i + 2]) or ''
  elseif ARGV[i + 1] == 'ZMOVE' then
    local score = redis.call('ZSCORE', ARGV[i + 2], ARGV[i + 5])
    if score then
      redis.call('ZREM', ARGV[i + 3], ARGV[i + 5])
      redis.call('ZADD', ARGV[i + 4], score, ARGV[i + 5])
    end
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
if #out == 1 then return 1 end
return out
"""


class Ops:
    """Writes that a compare-and-set script makes beside the record (same round trip)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self.reads: list[str] = []

    def _add(self, *words: object) -> None:
        self.args += [str(len(words)), *(str(w) for w in words)]

    def sadd(self, key: str, *members: str) -> None:
        self._add("SADD", key, *members)

    def srem(self, key: str, *members: str) -> None:
        self._add("SREM", key, *members)

    def delete(self, *keys: str) -> None:
        self._add("DEL", *keys)

    def lpush(self, key: str, value: str) -> None:
        self._add("LPUSH", key, value)

    def ltrim(self, key: str, start: int, stop: int) -> None:
        self._add("LTRIM", key, start, stop)

    def read(self, key: str) -> None:
        """Read ``key`` in the same round trip, after the writes (see ``_Base._read_along``)."""
        self.reads.append(key)
        self._add("READ", key)

    def zmove(self, scores: str, source: str, target: str, member: str) -> None:
        """Move ``member`` from sorted set ``source`` to ``target`` keeping its score in
        ``scores`` (nothing when it has none there)."""
        self._add("ZMOVE", scores, source, target, member)


# KEYS: the queue's delayed, ready, leased and meta keys, the sequence counter, and 'since'
# (each entry's ready-at, until it is acknowledged). ARGV: task id, priority, ready-at
# timestamp, the score span per priority, the time now. Re-enqueueing replaces the entry. An
# entry already due goes straight to the ready set: no later move out of 'delayed'.
_ENQUEUE = """
local seq = redis.call('INCR', KEYS[5])
local score = (1000 - tonumber(ARGV[2])) * tonumber(ARGV[4]) + seq
local scored = string.format('%.0f', score)
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], scored .. '|' .. ARGV[2] .. '|' .. seq)
if tonumber(ARGV[3]) <= tonumber(ARGV[5]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZADD', KEYS[2], scored, ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[1])
return seq
"""


# The records a list or set of ids names, in one round trip. KEYS: the list or set.
# ARGV: 'list' or 'set', the records' key prefix, and optionally one more key whose value
# comes first (or '' when it is absent). Answers ids and records, alternating.
_RECORDS = """
local out = {}
if ARGV[3] then out[1] = redis.call('GET', ARGV[3]) or '' end
local ids
if ARGV[1] == 'list' then ids = redis.call('LRANGE', KEYS[1], 0, -1)
else ids = redis.call('SMEMBERS', KEYS[1]) end
for first = 1, #ids, 1000 do  -- MGET in chunks: unpack() has a limit of a few thousand
  local keys = {}
  local last = math.min(first + 999, #ids)
  for i = first, last do keys[#keys + 1] = ARGV[2] .. ids[i] end
  local raws = redis.call('MGET', unpack(keys))
  for i = first, last do
    local raw = raws[i - first + 1]
    if raw then
      out[#out + 1] = ids[i]
      out[#out + 1] = raw
    end
  end
end
return out
"""


# KEYS: the session, the index of all sessions, the sequence counter. ARGV: session id, JSON,
# status, the status indexes' key prefix. Keeps the session's place (sequence) when replaced,
# and moves it between status indexes (reading only the old record's status).
_SAVE_SESSION = """
local seq = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not seq then seq = redis.call('INCR', KEYS[3]) end
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
if old then
  local status = cjson.decode(old)['status']
  if status ~= ARGV[3] then redis.call('ZREM', ARGV[4] .. status, ARGV[1]) end
end
redis.call('ZADD', ARGV[4] .. ARGV[3], seq, ARGV[1])
return 1
"""


def _load(model: type[M], raw: str | None) -> M | None:
    return model.model_validate_json(raw) if raw is not None else None


def _page(items: list[M], offset: int, limit: int) -> Page[M]:
    return Page(items=items[offset : offset + limit], total=len(items), offset=offset, limit=limit)


class _Base:
    """``Storage`` on Redis; safe to share between replicas."""

    def __init__(self, url: str, *, prefix: str = "opscore:") -> None:
        self.url = url
        self.p = prefix
        self._lanes: list[Any] = []
        self._turn = 0
        self._scripts: dict[str, Any] = {}
        self._seen = Seen(4096)
        self._batcher: CommandBatcher | None = None

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

    @property
    def _redis(self) -> Any:
        """The next of a few clients that each keep one connection (in turn).

        redis-py's pooled client takes a connection from its pool for every command; with
        many requests in flight it opened one connection each and spent 700 us of CPU per
        command, against under 50 us on a client with one connection of its own
        (``python -m bench.redis_clients``). A few such lanes keep commands flowing while
        one waits; pipelines still take their own connection from the shared pool."""
        if not self._lanes:
            raise StorageError("Redis store is not open")
        self._turn = (self._turn + 1) % len(self._lanes)
        return self._lanes[self._turn]

    async def open(self) -> None:
        import redis.asyncio as aioredis

        pool = aioredis.ConnectionPool.from_url(
            self.url, decode_responses=True, health_check_interval=30
        )
        self._lanes = [
            aioredis.Redis(connection_pool=pool, single_connection_client=True)
            for _ in range(LANES)
        ]
        self._batcher = CommandBatcher(pool)
        try:
            await self._redis.ping()
        except Exception as exc:
            await self.close()
            raise StorageError(f"Cannot reach Redis at {redacted(self.url)}: {exc}") from exc
        for name, source in (
            ("dequeue", _DEQUEUE),
            ("ack", _ACK),
            ("requeue", _REQUEUE),
            ("cas", _CAS),
            ("enqueue", _ENQUEUE),
            ("save_session", _SAVE_SESSION),
            ("records", _RECORDS),
        ):
            self._scripts[name] = self._redis.register_script(source)

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one of the registered Lua scripts, batched with other commands of this turn
        of the event loop (loaded again if Redis lost it, as after a restart)."""
        script = self._scripts[name]
        try:
            return await self._batched("EVALSHA", script.sha, len(keys), *keys, *args)
        except NoScriptError:
            await self._redis.script_load(script.script)
            return await self._batched("EVALSHA", script.sha, len(keys), *keys, *args)

    async def _batched(self, *command: Any) -> Any:
        if self._batcher is None:
            raise StorageError("Redis store is not open")
        return await self._batcher.call(*command)

    async def close(self) -> None:
        batcher, self._batcher = self._batcher, None
        if batcher is not None:
            await batcher.close()
        lanes, self._lanes = self._lanes, []
        for lane in lanes:
            await lane.aclose()
        if lanes:
            await lanes[0].connection_pool.disconnect()

    async def ping(self) -> None:
        await self._redis.ping()

    def set_queue_listener(self, listener: Callable[[], None]) -> None:
        """Nothing to listen to: replicas on Redis find each other's work at their next dispatch interval."""

    async def _get(self, key: str) -> str | None:
        """GET that remembers what it read, so a compare-and-set that follows costs one
        round trip instead of two."""
        raw: str | None = await self._batched("GET", key)
        self._seen.put(key, raw)
        return raw

    def _read_along(self, keys: list[str], raws: list[str]) -> None:
        """Keep values read along with a write, for one ``_get_soon`` of the same call chain."""
        along = _ALONG.get()
        if along is None:
            along = {}
            _ALONG.set(along)
        now = time.monotonic()
        for key, raw in zip(keys, raws, strict=True):
            value = raw or None
            self._seen.put(key, value)
            along[key] = (value, now)

    async def _get_soon(self, key: str) -> str | None:
        """GET, unless the same call chain (a request, a background task) read ``key`` along
        with a write a moment ago, and this process has not written it since: that value is
        then exactly what a GET issued at that moment would have answered. Used once."""
        along = _ALONG.get()
        kept = along.pop(key, None) if along else None
        if kept is not None:
            value, at = kept
            if time.monotonic() - at < ALONG_SECONDS and self._seen.get(key) == value:
                return value
        return await self._get(key)

    async def _cas(
        self,
        key: str,
        decide: Callable[[str | None], tuple[str | None, R, Callable[[Ops], None] | None]],
    ) -> R:
        """Optimistic read-modify-write of one key, usually in one round trip.

        ``decide(raw)`` returns (new raw value or None to leave it, the result, extra writes
        or None). It first decides on the value this process last read or wrote; the script
        writes only if the key still holds exactly that value, and otherwise answers the
        current value, on which ``decide`` runs again. The extra writes run in the same
        script, so they land with the record or not at all.
        """
        raw = self._seen.get(key)
        fresh = raw is UNSEEN
        if fresh:
            raw = await self._get(key)
        while True:
            try:
                new, result, extra = decide(raw)
            except OpsCoreError:
                if fresh:
                    raise
                # refused on a guess (an unknown agent, a stale timestamp): ask the store
                raw, fresh = await self._get(key), True
                continue
            if new is None and extra is None:
                if fresh:
                    return result
                # nothing to write, judged on a guess: judge again on what the store holds
                raw, fresh = await self._get(key), True
                continue
            ops = Ops()
            if extra is not None:
                extra(ops)
            flag = "1" if new is not None else "0"
            args = ["" if raw is None else "=" + raw, flag, new or "", *ops.args]
            answer = await self._script("cas", [key], args)
            if answer == 1 or answer[0] == 1:
                self._seen.put(key, new if new is not None else raw)
                if ops.reads:
                    self._read_along(ops.reads, answer[1:])
                return result
            raw, fresh = (answer[1] if len(answer) > 1 else None), True
            self._seen.put(key, raw)

    async def _records(self, index: str, kind: str, prefix: str) -> list[str]:
        """The raw records whose ids ``index`` (a list or set) holds, in one round trip;
        each is remembered as a guess for a compare-and-set that may follow."""
        flat = await self._script("records", keys=[index], args=[kind, self.k(prefix, "")])
        return self._remember(flat, prefix)

    def _remember(self, flat: list[str], prefix: str) -> list[str]:
        """The records of an answer of ids and records (alternating), each remembered as a
        guess for a compare-and-set that may follow."""
        raws = flat[1::2]
        for record_id, raw in zip(flat[::2], raws, strict=True):
            self._seen.put(self.k(prefix, record_id), raw)
        return raws

    async def _next(self, name: str) -> int:
        return int(await self._batched("INCR", self.k("seq", name)))
