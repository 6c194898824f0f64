"""RedisStorage: workflow templates, each version once (``save_workflow`` keeps the first)."""

from __future__ import annotations

import asyncio

from ...models import Page, WorkflowTemplate
from ..parsed import PARSED
from .base import _Base, _load, _page

# templates whose newest version a process remembers (a guess, checked at each read)
NEWEST_KEPT = 1024


class TemplateRecords(_Base):
    async def save_workflow(self, template: WorkflowTemplate) -> WorkflowTemplate | None:
        versions = self.k("workflow", template.id)
        from redis.exceptions import WatchError

        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(versions)
                    existing = await pipe.hget(versions, template.version)
                    if existing is not None:
                        await pipe.unwatch()
                        return _load(WorkflowTemplate, existing)
                    pipe.multi()
                    pipe.hset(versions, template.version, PARSED.dump(template))
                    pipe.rpush(self.k("workflow_order", template.id), template.version)
                    pipe.sadd(self.k("workflows"), template.id)
                    await pipe.execute()
                    return None
                except WatchError:
                    continue

    async def get_workflow(self, workflow_id: str, version: str | None) -> WorkflowTemplate | None:
        """The newest version, asked at every run's start, in one round trip: which version
        is newest, and the version this process last found newest, together (still the
        newest: its content is the answer, read now; else a second read for the new one)."""
        versions = self.k("workflow", workflow_id)
        if version is not None:
            return _load(WorkflowTemplate, await self._batched("HGET", versions, version))
        order = self.k("workflow_order", workflow_id)
        last = self._newest.get(workflow_id)
        if last is None:
            newest, raw = await self._batched("LINDEX", order, -1), None
        else:
            newest, raw = await asyncio.gather(
                self._batched("LINDEX", order, -1), self._batched("HGET", versions, last)
            )
        if newest is None:
            self._newest.pop(workflow_id, None)
            return None
        if newest != last:
            if len(self._newest) >= NEWEST_KEPT:
                self._newest.clear()  # many templates: start over, the cost is a round trip
            self._newest[workflow_id] = newest
            raw = await self._batched("HGET", versions, newest)
        return _load(WorkflowTemplate, raw)

    async def list_workflows(self, *, offset: int, limit: int) -> Page[WorkflowTemplate]:
        ids = sorted(await self._redis.smembers(self.k("workflows")))
        latest = [await self.get_workflow(i, None) for i in ids]
        return _page([t for t in latest if t is not None], offset, limit)

    async def workflow_versions(self, workflow_id: str) -> list[str]:
        return list(await self._redis.lrange(self.k("workflow_order", workflow_id), 0, -1))

    async def delete_workflow(self, workflow_id: str, version: str | None) -> int:
        versions, order = self.k("workflow", workflow_id), self.k("workflow_order", workflow_id)
        if version is None:
            count = await self._redis.hlen(versions)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(versions, order)
                pipe.srem(self.k("workflows"), workflow_id)
                await pipe.execute()
            return int(count)
        removed = await self._redis.hdel(versions, version)
        await self._redis.lrem(order, 0, version)
        if not await self._redis.hlen(versions):
            await self._redis.srem(self.k("workflows"), workflow_id)
        return int(removed)
