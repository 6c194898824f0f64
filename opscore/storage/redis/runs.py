"""RedisStorage: task runs (sessions: ``sessions.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any, NamedTuple

from ...models import (
    Agent,
    Session,
    TaskRun,
    TaskStatus,
)
from ...models.sweep_due import INFLIGHT, sweep_due
from ..parsed import PARSED
from ..report_and_task import (
    QueuedNext,
    RunEnd,
    TaskUpdate,
    TaskWritten,
    next_queued,
    run_ended,
)
from ..rules import slot_released, slot_taken, task_change_applies
from .base import (
    _due_score,
    _load,
)
from .sessions import SessionRecords


class Follows(NamedTuple):
    """What a completion writes with it (``RunRecords._what_follows``): the new record of
    the key of what follows (None: left as it is), the step queued, the run ended, and the
    script's other writes for them."""

    raw: str | None = None
    queued: TaskRun | None = None
    ended: Session | None = None
    ops: Callable[[Any], None] | None = None


# a run with at most this many tasks is read along with the completion of one of them
READ_ALONG_SESSION_TASKS = 32


class RunRecords(SessionRecords):
    # --- tasks ------------------------------------------------------------------------------
    def _index_inflight(self, p: Any, task: TaskRun, before: TaskRun | bool | None) -> None:
        """Keep the task in the index ``inflight_tasks`` reads (``inflight_key``: every task
        in flight, scored by when a sweep may next act on it), or out of it. ``before``: the
        record this write replaces (what a compare-and-set was decided on), None for a new
        task, or True when it is unknown (the index is then set whatever it holds). Only a
        change is written: every write of a task keeps the index, so it was right before
        this one (two commands per attempt, not one per move)."""
        was = before if isinstance(before, TaskRun) and before.status in INFLIGHT else None
        if task.status not in INFLIGHT:
            if before is True or was is not None:
                p.zrem(self.inflight_key, task.task_id)
            return
        due = sweep_due(task)
        if was is None or sweep_due(was) != due:
            p.zadd(self.inflight_key, {task.task_id: _due_score(due)})

    def _task_moved(self, before: TaskRun, after: TaskRun) -> Callable[..., None]:
        """What a task's change writes beside its record: the in-flight index; and for a
        move to completed, its run is read along, since the run advances next
        (workflow/engine.py), unless ``read_run`` is False (its next step was queued with
        it, or it was the run's last: the run is not read back then)."""

        def ops(p: Any, read_run: bool = True) -> None:
            self._index_inflight(p, after, before)
            completed = after.status == TaskStatus.COMPLETED != before.status
            if completed and read_run:
                p.read(self.k("session", after.session_id))
                p.read_records(
                    self.k("session_tasks", after.session_id),
                    self.k("task", ""),
                    READ_ALONG_SESSION_TASKS,
                )

        return ops

    async def save_tasks(self, tasks: Iterable[TaskRun]) -> None:
        tasks = list(tasks)
        existing = (
            await self._redis.mget([self.k("task", t.task_id) for t in tasks]) if tasks else []
        )
        async with self._redis.pipeline(transaction=True) as pipe:
            for task, old in zip(tasks, existing, strict=True):
                raw = PARSED.dump(task)
                pipe.set(self.k("task", task.task_id), raw)
                self._seen.put(self.k("task", task.task_id), raw)
                if old is None:  # a new task, in no index yet
                    pipe.rpush(self.k("session_tasks", task.session_id), task.task_id)
                # a task read without a watch may have changed since: set the index as is
                self._index_inflight(pipe, task, None if old is None else True)
            await pipe.execute()

    async def get_task(self, task_id: str) -> TaskRun | None:
        return _load(TaskRun, await self._get_soon(self.k("task", task_id)))

    async def session_tasks(self, session_id: str) -> list[TaskRun]:
        raws = await self._records(self.k("session_tasks", session_id), "list", "task")
        return [PARSED.load(TaskRun, r) for r in raws]

    async def session_with_tasks(self, session_id: str) -> tuple[Session | None, list[TaskRun]]:
        session_key = self.k("session", session_id)
        along = self._along_records(
            [session_key], self.k("session_tasks", session_id), self.k("task", "")
        )
        if along is not None:  # read with the completion of one of its tasks, a moment ago
            (raw, *_), records = along
            return _load(Session, raw), [PARSED.load(TaskRun, r) for r in records]
        flat = await self._script(
            "records",
            keys=[self.k("session_tasks", session_id)],
            args=["list", self.k("task", ""), session_key],
        )
        raw = flat[0] or None  # asked for with ARGV[3]: the session's record comes first
        self._seen.put(session_key, raw)
        return _load(Session, raw), [
            PARSED.load(TaskRun, r) for r in self._remember(flat[1:], "task")
        ]

    async def update_task(
        self,
        task_id: str,
        changes: dict[str, Any],
        *,
        expect: Collection[str] | None = None,
        attempt: int | None = None,
        enqueue_at: datetime | None = None,
        release_slot_of: str | None = None,
        claim_slot_of: str | None = None,
        ack_entry: bool = False,
    ) -> TaskRun | None:
        if release_slot_of is not None and claim_slot_of is not None:
            raise ValueError("a change releases a slot or claims one, not both")
        update = TaskUpdate(changes, expect, attempt, release_slot_of)
        changed, _ = await self._change_task(
            task_id, update, enqueue_at, claim_slot_of, ack_entry=ack_entry
        )
        return changed

    async def update_task_and_next(self, task_id: str, update: TaskUpdate) -> TaskWritten:
        changed, (queued, ended) = await self._change_task(task_id, update)
        return TaskWritten(changed, queued, ended)

    async def _change_task(
        self,
        task_id: str,
        update: TaskUpdate,
        enqueue_at: datetime | None = None,
        claim_slot_of: str | None = None,
        *,
        ack_entry: bool = False,
    ) -> tuple[TaskRun | None, tuple[TaskRun | None, Session | None]]:
        """One compare-and-set of the task, with its agent's record when a slot is claimed or
        released, and the next step ``update.then`` queues, or the run ``update.ends_run``
        completes, when there is one: (the task, (the step queued, the run completed));
        ``ack_entry``: its queue entry acknowledged in the same script (``Ops.ack``)."""
        release_slot_of, then, end = update.release_slot_of, update.then, update.ends_run
        keys = [self.k("task", task_id)]
        slot_of = release_slot_of or claim_slot_of
        if slot_of is not None:  # the agent's record changes in the same script
            keys.append(self.k("agent", slot_of))
        if then is not None:
            keys.append(self.k("task", then.task_id))
        elif end is not None:
            keys.append(self.k("session", end.session_id))

        def decide(raws: list[str | None]) -> tuple[list[str | None], Any, Any]:
            unchanged: list[str | None] = [None] * len(raws)
            task = _load(TaskRun, raws[0])
            if task is None or not task_change_applies(task, update.expect, update.attempt):
                return unchanged, (None, (None, None)), None
            agent = _load(Agent, raws[1]) if slot_of is not None else None
            changed_agent = None
            if claim_slot_of is not None:  # NoFreeSlotError: asked again if on a guess
                changed_agent = slot_taken(agent, task_id)
            elif agent is not None:
                changed_agent = slot_released(agent, task_id)
            updated = task.model_copy(update=update.changes)
            news: list[str | None] = [PARSED.dump(updated)]
            if slot_of is not None:
                news.append(PARSED.dump(changed_agent) if changed_agent is not None else None)
            follows = self._what_follows(then, end, raws[-1])
            if then is not None or end is not None:
                news.append(follows.raw)
            moved = self._task_moved(task, updated)

            def ops(p: Any) -> None:
                moved(p, read_run=follows.queued is None and end is None)
                if enqueue_at is not None:
                    p.enqueue(self._enqueue_keys, task_id, updated.priority, enqueue_at.timestamp())
                if ack_entry:
                    p.ack(self._ack_keys, task_id)
                if follows.ops is not None:
                    follows.ops(p)

            return news, (updated, (follows.queued, follows.ended)), ops

        return await self._cas_many(keys, decide)

    def _what_follows(
        self, then: QueuedNext | None, end: RunEnd | None, raw: str | None
    ) -> Follows:
        """What a completion writes with it in the same script, decided on ``raw``, the
        record the script read of it: the next step ``then`` queues (``TaskUpdate.then``)
        and its queue entry, or the run ``end`` completes (``TaskUpdate.ends_run``) and its
        place in the index by status. Nothing when neither is asked for or still applies."""
        if then is not None:
            queued = next_queued(then, _load(TaskRun, raw))
            if queued is not None:
                entry = (queued.task_id, queued.priority, then.ready_at.timestamp())

                def enqueue(p: Any) -> None:
                    p.enqueue(self._enqueue_keys, *entry)

                return Follows(PARSED.dump(queued), queued, None, enqueue)
        elif end is not None:
            before = _load(Session, raw)
            ended = run_ended(end, before)
            if ended is not None and before is not None:
                return Follows(PARSED.dump(ended), None, ended, self._session_moved(before, ended))
        return Follows()

    async def inflight_tasks(self, due_by: datetime | None = None) -> list[TaskRun]:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.scard(self.k("inflight"))
            if due_by is None:
                pipe.zrange(self.inflight_key, 0, -1)
            else:
                pipe.zrangebyscore(self.inflight_key, "-inf", due_by.timestamp())
            unindexed, ids = await pipe.execute()
        if unindexed:  # written by a release before the index had scores
            scores = await self._index_unscored()
            limit = math.inf if due_by is None else due_by.timestamp()
            ids = [*ids, *(i for i, score in scores.items() if score <= limit)]
        raws = await self._redis.mget([self.k("task", i) for i in ids]) if ids else []
        found = dict(zip(ids, (_load(TaskRun, r) for r in raws), strict=True))
        settled = [i for i, t in found.items() if t is None or t.status not in INFLIGHT]
        if settled:  # left by a race with the move above (an upgrade's): read once, not again
            prefix = self.k("task", "")
            await self._script("unindex_settled", keys=[self.inflight_key], args=[prefix, *settled])
        return [t for t in found.values() if t is not None and t.status in INFLIGHT]

    async def _index_unscored(self) -> dict[str, float]:
        """Move the tasks of the in-flight set an older release kept (``inflight``, no scores)
        into the scored index: its replicas may still be writing during a rolling upgrade,
        so this runs whenever that set is not empty. Answers the tasks moved, scored."""
        old = list(await self._redis.smembers(self.k("inflight")))
        raws = await self._redis.mget([self.k("task", i) for i in old]) if old else []
        tasks = [t for t in (_load(TaskRun, r) for r in raws) if t is not None]
        scores = {t.task_id: _due_score(sweep_due(t)) for t in tasks if t.status in INFLIGHT}
        async with self._redis.pipeline(transaction=True) as pipe:
            if scores:
                pipe.zadd(self.inflight_key, scores)
            if old:
                pipe.srem(self.k("inflight"), *old)
            await pipe.execute()
        return scores

    async def prune_finished(
        self, *, finished_before: datetime | None, keep: int, batch: int = 500
    ) -> int:
        # finished sessions, newest first, across the three status indexes (seq is shared)
        scored: list[tuple[float, str]] = []
        for status in ("completed", "failed", "cancelled"):
            members = await self._redis.zrange(self.k("sessions", status), 0, -1, withscores=True)
            scored += [(score, sid) for sid, score in members]
        scored.sort(reverse=True)
        victims = [sid for _, sid in scored[keep:]]
        if finished_before is not None and len(victims) < batch:
            recent = [sid for _, sid in scored[:keep]]
            victims += await self._finished_before(recent, finished_before, batch - len(victims))
        victims = victims[:batch]
        for session_id in victims:
            await self._drop_session(session_id)
        return len(victims)

    async def _drop_session(self, session_id: str) -> None:
        session = _load(Session, await self._redis.get(self.k("session", session_id)))
        task_ids = await self._redis.lrange(self.k("session_tasks", session_id), 0, -1)
        async with self._redis.pipeline(transaction=True) as pipe:
            if task_ids:
                pipe.delete(*[self.k("task", t) for t in task_ids])
                pipe.zrem(self.inflight_key, *task_ids)
                pipe.hdel(self.k("dead"), *task_ids)
                pipe.zrem(self.k("dead_order"), *task_ids)
            pipe.delete(self.k("session_tasks", session_id), self.k("session", session_id))
            self._seen.forget(self.k("session", session_id), *(self.k("task", t) for t in task_ids))
            pipe.zrem(self.k("sessions"), session_id)
            if session is not None:
                pipe.zrem(self.k("sessions", session.status.value), session_id)
            await pipe.execute()
