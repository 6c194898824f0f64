"""Shared store on Redis (``redis://host:port/db``), for several Ops-Core replicas.

Each record is a JSON string under its own key; compare-and-set methods use WATCH/MULTI
(optimistic transactions, retried on conflict), so they are atomic across replicas. The queue
is three sorted sets (delayed, ready, leased) moved by Lua scripts: a claimed entry is leased,
and if the replica that claimed it dies before acknowledging it, the lease expires and another
replica's dispatcher gets it. Turn on Redis's append-only file for durability.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Collection, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from ..errors import OpsCoreError, StorageError
from ..models import (
    Agent,
    DeadLetter,
    Page,
    QueueEntry,
    Session,
    StateRecord,
    TaskRun,
    WorkflowTemplate,
)
from .rules import apply_state

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


class RedisStorage:
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

    # --- agents -----------------------------------------------------------------------------
    async def _all_agents(self) -> list[Agent]:
        ids = await self._redis.smembers(self.k("agents"))
        if not ids:
            return []
        raws = await self._redis.mget([self.k("agent", i) for i in ids])
        return [a for a in (_load(Agent, r) for r in raws) if a is not None]

    async def create_agent(self, agent: Agent) -> Agent | None:
        key = self.k("agent", agent.agent_id)

        def decide(raw: str | None) -> tuple[str | None, Agent | None, Any]:
            if raw is not None:
                return None, _load(Agent, raw), None
            return agent.model_dump_json(), None, lambda p: p.sadd(self.k("agents"), agent.agent_id)

        return await self._cas(key, decide)

    async def save_agent(self, agent: Agent) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.k("agent", agent.agent_id), agent.model_dump_json())
            pipe.sadd(self.k("agents"), agent.agent_id)
            await pipe.execute()

    async def get_agent(self, agent_id: str) -> Agent | None:
        return _load(Agent, await self._redis.get(self.k("agent", agent_id)))

    async def list_agents(
        self, *, state: str | None, capability: str | None, offset: int, limit: int
    ) -> Page[Agent]:
        agents = [
            a
            for a in await self._all_agents()
            if (state is None or a.state == state)
            and (capability is None or capability in a.capabilities)
        ]
        agents.sort(key=lambda a: a.agent_id)
        return _page(agents, offset, limit)

    async def delete_agent(self, agent_id: str) -> Agent | None:
        key = self.k("agent", agent_id)

        def decide(raw: str | None) -> tuple[None, Agent | None, Any]:
            def ops(p: Any) -> None:
                p.delete(key, self.k("history", agent_id))
                p.srem(self.k("agents"), agent_id)

            return None, _load(Agent, raw), ops if raw is not None else None

        return await self._cas(key, decide)

    async def _update_agent(
        self, agent_id: str, change: Callable[[Agent], Agent | None]
    ) -> Agent | None:
        def decide(raw: str | None) -> tuple[str | None, Agent | None, Any]:
            agent = _load(Agent, raw)
            if agent is None:
                return None, None, None
            updated = change(agent)
            if updated is None:
                return None, agent, None
            return updated.model_dump_json(), updated, None

        return await self._cas(self.k("agent", agent_id), decide)

    async def update_agent(self, agent_id: str, changes: dict[str, Any]) -> Agent | None:
        return await self._update_agent(agent_id, lambda a: a.model_copy(update=changes))

    async def record_state(self, record: StateRecord, *, history_limit: int) -> tuple[Agent, bool]:
        history = self.k("history", record.agent_id)

        def decide(raw: str | None) -> tuple[str | None, tuple[Agent, bool], Any]:
            agent, duplicate = apply_state(_load(Agent, raw), record)
            if duplicate:
                return None, (agent, True), None

            def ops(p: Any) -> None:
                p.lpush(history, record.model_dump_json())
                p.ltrim(history, 0, history_limit - 1)

            return agent.model_dump_json(), (agent, False), ops

        return await self._cas(self.k("agent", record.agent_id), decide)

    async def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        key = self.k("history", agent_id)
        total = await self._redis.llen(key)
        raws = await self._redis.lrange(key, offset, offset + limit - 1) if limit else []
        items = [StateRecord.model_validate_json(r) for r in raws]
        return Page(items=items, total=total, offset=offset, limit=limit)

    async def available_agents(self, states: Collection[str]) -> list[Agent]:
        return [
            a
            for a in await self._all_agents()
            if a.state in states and len(a.active_tasks) < a.max_concurrency
        ]

    async def stale_agents(self, *, seen_before: datetime, exclude_state: str) -> list[Agent]:
        return [
            a
            for a in await self._all_agents()
            if a.last_seen < seen_before and a.state != exclude_state
        ]

    async def claim_agent_slot(self, agent_id: str, task_id: str) -> bool:
        claimed = [False]

        def change(agent: Agent) -> Agent | None:
            claimed[0] = False  # decide() runs again when a concurrent write wins the race
            if len(agent.active_tasks) >= agent.max_concurrency:
                return None
            claimed[0] = True
            if task_id in agent.active_tasks:
                return None
            return agent.model_copy(update={"active_tasks": [*agent.active_tasks, task_id]})

        await self._update_agent(agent_id, change)
        return claimed[0]

    async def release_agent_slot(self, agent_id: str, task_id: str) -> None:
        def change(agent: Agent) -> Agent | None:
            if task_id not in agent.active_tasks:
                return None
            return agent.model_copy(
                update={"active_tasks": [t for t in agent.active_tasks if t != task_id]}
            )

        await self._update_agent(agent_id, change)

    # --- templates --------------------------------------------------------------------------
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
                    pipe.hset(versions, template.version, template.model_dump_json())
                    pipe.rpush(self.k("workflow_order", template.id), template.version)
                    pipe.sadd(self.k("workflows"), template.id)
                    await pipe.execute()
                    return None
                except WatchError:
                    continue

    async def get_workflow(self, workflow_id: str, version: str | None) -> WorkflowTemplate | None:
        if version is None:
            order = await self._redis.lrange(self.k("workflow_order", workflow_id), -1, -1)
            if not order:
                return None
            version = order[0]
        return _load(
            WorkflowTemplate, await self._redis.hget(self.k("workflow", workflow_id), version)
        )

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

    # --- sessions ---------------------------------------------------------------------------
    async def save_session(self, session: Session) -> None:
        key = self.k("session", session.session_id)
        seq = await self._redis.zscore(self.k("sessions"), session.session_id)
        if seq is None:
            seq = await self._next("sessions")
        old = _load(Session, await self._redis.get(key))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(key, session.model_dump_json())
            pipe.zadd(self.k("sessions"), {session.session_id: seq})
            if old is not None and old.status != session.status:
                pipe.zrem(self.k("sessions", old.status.value), session.session_id)
            pipe.zadd(self.k("sessions", session.status.value), {session.session_id: seq})
            await pipe.execute()

    async def get_session(self, session_id: str) -> Session | None:
        return _load(Session, await self._redis.get(self.k("session", session_id)))

    async def list_sessions(
        self,
        *,
        status: str | None,
        workflow_id: str | None,
        agent_id: str | None,
        offset: int,
        limit: int,
    ) -> Page[Session]:
        index = self.k("sessions", status) if status else self.k("sessions")
        if workflow_id is None and agent_id is None:
            total = await self._redis.zcard(index)
            ids = await self._redis.zrevrange(index, offset, offset + limit - 1)
            raws = await self._redis.mget([self.k("session", i) for i in ids]) if ids else []
            items = [s for s in (_load(Session, r) for r in raws) if s is not None]
            return Page(items=items, total=total, offset=offset, limit=limit)
        ids = await self._redis.zrevrange(index, 0, -1)
        raws = await self._redis.mget([self.k("session", i) for i in ids]) if ids else []
        sessions = [
            s
            for s in (_load(Session, r) for r in raws)
            if s is not None
            and (workflow_id is None or s.workflow_id == workflow_id)
            and (agent_id is None or s.agent_id == agent_id)
        ]
        return _page(sessions, offset, limit)

    async def update_session(
        self, session_id: str, changes: dict[str, Any], *, expect: Collection[str] | None = None
    ) -> Session | None:
        seq = await self._redis.zscore(self.k("sessions"), session_id)

        def decide(raw: str | None) -> tuple[str | None, Session | None, Any]:
            session = _load(Session, raw)
            if session is None or (expect is not None and session.status not in expect):
                return None, None, None
            updated = session.model_copy(update=changes)

            def ops(p: Any) -> None:
                if updated.status != session.status and seq is not None:
                    p.zrem(self.k("sessions", session.status.value), session_id)
                    p.zadd(self.k("sessions", updated.status.value), {session_id: seq})

            return updated.model_dump_json(), updated, ops

        return await self._cas(self.k("session", session_id), decide)

    # --- tasks ------------------------------------------------------------------------------
    def _inflight_op(self, task: TaskRun) -> Callable[[Any], None]:
        def ops(p: Any) -> None:
            if task.status.value in _INFLIGHT:
                p.sadd(self.k("inflight"), task.task_id)
            else:
                p.srem(self.k("inflight"), task.task_id)

        return ops

    async def save_tasks(self, tasks: Iterable[TaskRun]) -> None:
        tasks = list(tasks)
        existing = (
            await self._redis.mget([self.k("task", t.task_id) for t in tasks]) if tasks else []
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            for task, old in zip(tasks, existing, strict=True):
                pipe.set(self.k("task", task.task_id), task.model_dump_json())
                if old is None:
                    pipe.rpush(self.k("session_tasks", task.session_id), task.task_id)
                self._inflight_op(task)(pipe)
            await pipe.execute()

    async def get_task(self, task_id: str) -> TaskRun | None:
        return _load(TaskRun, await self._redis.get(self.k("task", task_id)))

    async def session_tasks(self, session_id: str) -> list[TaskRun]:
        ids = await self._redis.lrange(self.k("session_tasks", session_id), 0, -1)
        raws = await self._redis.mget([self.k("task", i) for i in ids]) if ids else []
        return [t for t in (_load(TaskRun, r) for r in raws) if t is not None]

    async def update_task(
        self,
        task_id: str,
        changes: dict[str, Any],
        *,
        expect: Collection[str] | None = None,
        attempt: int | None = None,
    ) -> TaskRun | None:
        def decide(raw: str | None) -> tuple[str | None, TaskRun | None, Any]:
            task = _load(TaskRun, raw)
            if task is None or (expect is not None and task.status not in expect):
                return None, None, None
            if attempt is not None and task.attempts != attempt:
                return None, None, None
            updated = task.model_copy(update=changes)
            return updated.model_dump_json(), updated, self._inflight_op(updated)

        return await self._cas(self.k("task", task_id), decide)

    async def inflight_tasks(self) -> list[TaskRun]:
        ids = list(await self._redis.smembers(self.k("inflight")))
        raws = await self._redis.mget([self.k("task", i) for i in ids]) if ids else []
        return [t for t in (_load(TaskRun, r) for r in raws) if t is not None]

    # --- queue ------------------------------------------------------------------------------
    async def enqueue(self, task_id: str, *, priority: int, ready_at: datetime) -> None:
        seq = await self._next("queue")
        score = (1000 - priority) * _SEQ_SPAN + seq
        delayed, ready, leased, meta = self._queue_keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(ready, task_id)
            pipe.zrem(leased, task_id)
            pipe.hset(meta, task_id, f"{score}|{priority}|{seq}")
            pipe.zadd(delayed, {task_id: ready_at.timestamp()})
            await pipe.execute()

    async def dequeue_ready(self, now: datetime, limit: int) -> list[QueueEntry]:
        lease = (now + LEASE).timestamp()
        flat = await self._scripts["dequeue"](
            keys=self._queue_keys, args=[now.timestamp(), lease, limit]
        )
        entries = []
        for task_id, meta in zip(flat[::2], flat[1::2], strict=True):
            # meta is "score|priority|seq", written by enqueue
            _, priority, seq = meta.split("|") if meta else ("0", "0", "0")
            entries.append(
                QueueEntry(task_id=task_id, priority=int(priority), ready_at=now, seq=int(seq))
            )
        return entries

    async def ack(self, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        if ids:
            await self._scripts["ack"](keys=self._queue_keys, args=ids)

    async def requeue(self, entries: Iterable[QueueEntry]) -> None:
        ids = [e.task_id for e in entries]
        if ids:
            await self._scripts["requeue"](keys=self._queue_keys, args=ids)

    async def queue_depth(self) -> int:
        delayed, ready, leased, _ = self._queue_keys
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcard(delayed)
            pipe.zcard(ready)
            pipe.zcard(leased)
            counts = await pipe.execute()
        return int(sum(counts))

    async def next_ready_at(self) -> datetime | None:
        first = await self._redis.zrange(self._queue_keys[0], 0, 0, withscores=True)
        if not first:
            return None
        return datetime.fromtimestamp(first[0][1], UTC)

    # --- dead letters and idempotency -------------------------------------------------------
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        seq = await self._next("dead")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.k("dead"), entry.task_id, entry.model_dump_json())
            pipe.zadd(self.k("dead_order"), {entry.task_id: seq})
            await pipe.execute()

    async def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        total = await self._redis.zcard(self.k("dead_order"))
        ids = await self._redis.zrevrange(self.k("dead_order"), offset, offset + limit - 1)
        raws = await self._redis.hmget(self.k("dead"), ids) if ids else []
        items = [d for d in (_load(DeadLetter, r) for r in raws) if d is not None]
        return Page(items=items, total=total, offset=offset, limit=limit)

    async def pop_dead_letter(self, task_id: str) -> DeadLetter | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.k("dead"), task_id)
            pipe.hdel(self.k("dead"), task_id)
            pipe.zrem(self.k("dead_order"), task_id)
            raw, _, _ = await pipe.execute()
        return _load(DeadLetter, raw)

    async def remember_idempotency_key(
        self, key: str, session_id: str, *, now: datetime, ttl: float
    ) -> str | None:
        redis_key = self.k("idem", key)
        if await self._redis.set(redis_key, session_id, nx=True, px=max(int(ttl * 1000), 1)):
            return None
        existing = await self._redis.get(redis_key)
        return existing if existing is not None else None

    async def forget_idempotency_key(self, key: str) -> None:
        await self._redis.delete(self.k("idem", key))


for _name in [n for n in vars(RedisStorage) if not n.startswith("_") and n not in ("k", "open")]:
    _attr = getattr(RedisStorage, _name)
    if callable(_attr) and getattr(_attr, "__code__", None) and _attr.__code__.co_flags & 0x80:
        setattr(RedisStorage, _name, _guard(_attr))
