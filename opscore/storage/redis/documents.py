"""RedisStorage: documents (subscriptions, deliveries, schedules).

Per kind: a hash of id -> document, a sorted set of ids by due time, and a sorted set of ids
under one score so that ``ZRANGEBYLEX`` lists them in id order by prefix. Writes that touch
more than one of them are Lua scripts, so each is atomic across replicas.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ...models import Page
from .base import _Base

# KEYS: docs, due, index. ARGV: id, doc, due ('' for never), expect ('' for none, '!' for
# "only if absent", else '=' .. the document it must still be)
_PUT = """
if ARGV[4] == '!' then
  if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 0 end
elseif ARGV[4] ~= '' then
  local cur = redis.call('HGET', KEYS[1], ARGV[1])
  if not cur or ('=' .. cur) ~= ARGV[4] then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], 0, ARGV[1])
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[2], ARGV[1])
else
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
end
return 1
"""

_DELETE = """
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])
"""

# ARGV: now, lease until, limit
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[2], ARGV[2], id)
  local doc = redis.call('HGET', KEYS[1], id)
  if doc then table.insert(out, doc) end
end
return out
"""


class DocumentRecords(_Base):
    def _doc_keys(self, kind: str) -> list[str]:
        return [self.k("doc", kind), self.k("docdue", kind), self.k("docids", kind)]

    async def _doc_script(self, name: str, source: str, keys: list[str], args: list[Any]) -> Any:
        if name not in self._scripts:
            self._scripts[name] = self._redis.register_script(source)
        return await self._script(name, keys, args)

    async def put_document(
        self,
        kind: str,
        doc_id: str,
        doc: str,
        *,
        due_at: datetime | None,
        expect: str | None = None,
        only_new: bool = False,
    ) -> bool:
        due = repr(due_at.timestamp()) if due_at else ""
        guard = "!" if only_new else "" if expect is None else "=" + expect
        written = await self._doc_script(
            "doc_put", _PUT, self._doc_keys(kind), [doc_id, doc, due, guard]
        )
        return bool(written)

    async def get_document(self, kind: str, doc_id: str) -> str | None:
        found = await self._redis.hget(self.k("doc", kind), doc_id)
        return str(found) if found is not None else None

    async def list_documents(
        self, kind: str, *, prefix: str = "", offset: int, limit: int, newest_first: bool = False
    ) -> Page[str]:
        docs, _, index = self._doc_keys(kind)
        low, high = f"[{prefix}" if prefix else "-", f"[{prefix}\U0010ffff" if prefix else "+"
        total = int(await self._redis.zlexcount(index, low, high))
        if newest_first:
            ids = await self._redis.zrevrangebylex(index, high, low, start=offset, num=limit)
        else:
            ids = await self._redis.zrangebylex(index, low, high, start=offset, num=limit)
        found = await self._redis.hmget(docs, ids) if ids else []
        items = [str(d) for d in found if d is not None]
        return Page(items=items, total=total, offset=offset, limit=limit)

    async def delete_document(self, kind: str, doc_id: str) -> bool:
        return bool(await self._doc_script("doc_delete", _DELETE, self._doc_keys(kind), [doc_id]))

    async def claim_due(
        self, kind: str, now: datetime, *, limit: int, lease_seconds: float
    ) -> list[str]:
        stamp = now.timestamp()
        args = [repr(stamp), repr(stamp + lease_seconds), limit]
        return [
            str(d) for d in await self._doc_script("doc_claim", _CLAIM, self._doc_keys(kind), args)
        ]
