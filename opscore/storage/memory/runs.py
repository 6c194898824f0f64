"""MemoryStorage: templates, sessions and task runs."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from ...models import (
    Page,
    Session,
    TaskRun,
    WorkflowTemplate,
)
from ..report_and_task import RunEnd, TaskUpdate, TaskWritten
from ..rules import ready_time, slot_released, slot_taken, task_change_applies
from .base import _Base, _page

_FINISHED = frozenset({"completed", "failed", "cancelled"})


class RunRecords(_Base):
    # --- templates --------------------------------------------------------------------------
    async def save_workflow(self, template: WorkflowTemplate) -> WorkflowTemplate | None:
        with self._lock:
            versions = self._workflows.setdefault(template.id, {})
            existing = versions.get(template.version)
            if existing is not None:
                return existing
            versions[template.version] = template
            return None

    async def get_workflow(self, workflow_id: str, version: str | None) -> WorkflowTemplate | None:
        with self._lock:
            versions = self._workflows.get(workflow_id)
            if not versions:
                return None
            if version is None:
                return next(reversed(versions.values()))
            return versions.get(version)

    async def list_workflows(self, *, offset: int, limit: int) -> Page[WorkflowTemplate]:
        with self._lock:
            latest = [next(reversed(v.values())) for v in self._workflows.values() if v]
        latest.sort(key=lambda t: t.id)
        return _page(latest, offset, limit)

    async def workflow_versions(self, workflow_id: str) -> list[str]:
        with self._lock:
            return list(self._workflows.get(workflow_id, {}))

    async def delete_workflow(self, workflow_id: str, version: str | None) -> int:
        with self._lock:
            versions = self._workflows.get(workflow_id)
            if not versions:
                return 0
            if version is None:
                del self._workflows[workflow_id]
                return len(versions)
            removed = 1 if versions.pop(version, None) is not None else 0
            if not versions:
                del self._workflows[workflow_id]
            return removed

    # --- sessions ---------------------------------------------------------------------------
    async def save_session(self, session: Session) -> None:
        with self._lock:
            self._put_session(session)

    def _put_session(self, session: Session) -> None:
        sid = session.session_id
        previous = self._sessions.get(sid)
        self._sessions[sid] = session
        if previous is not None and previous.status == session.status:
            return
        number = self._session_number.setdefault(sid, next(self._session_counter))
        if previous is not None:
            self._unindex(previous.status, number, sid)
        bisect.insort(self._by_status.setdefault(session.status, []), (number, sid))

    def _unindex(self, status: str, number: int, session_id: str) -> None:
        index = self._by_status[status]
        at = bisect.bisect_left(index, (number, session_id))
        if at < len(index) and index[at] == (number, session_id):
            del index[at]

    async def get_session(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    async def list_sessions(
        self,
        *,
        status: str | None,
        workflow_id: str | None,
        agent_id: str | None,
        offset: int,
        limit: int,
    ) -> Page[Session]:
        """Newest first. A status-only (or unfiltered) listing walks only to its page, through
        the per-status index; other filters walk every session once."""
        with self._lock:
            if workflow_id is None and agent_id is None:
                if status is None:
                    total = len(self._sessions)
                    page = itertools.islice(reversed(self._sessions), offset, offset + limit)
                    items = [self._sessions[sid] for sid in page]
                else:
                    index = self._by_status.get(status, [])
                    total = len(index)
                    window = index[max(total - offset - limit, 0) : max(total - offset, 0)]
                    items = [self._sessions[sid] for _, sid in reversed(window)]
                return Page(items=items, total=total, offset=offset, limit=limit)
            newest_first = reversed(self._sessions.values())
            sessions = [
                s
                for s in newest_first
                if (status is None or s.status == status)
                and (workflow_id is None or s.workflow_id == workflow_id)
                and (agent_id is None or s.agent_id == agent_id)
            ]
        return _page(sessions, offset, limit)

    async def oldest_session(self, *, status: str, workflow_id: str) -> Session | None:
        with self._lock:
            for _, sid in self._by_status.get(status, []):
                found = self._sessions[sid]
                if found.workflow_id == workflow_id:
                    return found
        return None

    async def update_session(
        self, session_id: str, changes: dict[str, Any], *, expect: Collection[str] | None = None
    ) -> Session | None:
        with self._lock:
            return self._change_session(session_id, changes, expect)

    def _change_session(
        self, session_id: str, changes: dict[str, Any], expect: Collection[str] | None
    ) -> Session | None:
        """``update_session``; the caller holds the lock."""
        session = self._sessions.get(session_id)
        if session is None or (expect is not None and session.status not in expect):
            return None
        was_open = session.status not in _FINISHED
        session = session.model_copy(update=changes)
        self._put_session(session)
        if was_open and session.status in _FINISHED:
            self._retire(session_id)
        return session

    def _end_run(self, end: RunEnd | None) -> Session | None:
        """The run a completion completes with it (``TaskUpdate.ends_run``); the caller
        holds the lock."""
        return self._change_session(end.session_id, end.changes, end.expect) if end else None

    def _retire(self, session_id: str) -> None:
        """Keep only the newest finished sessions (and their tasks): memory stays bounded."""
        self._finished.append(session_id)
        while len(self._finished) > self.finished_session_limit:
            old = self._finished.popleft()
            session = self._sessions.get(old)
            if session is None or session.status not in _FINISHED:  # re-driven since: keep it
                continue
            self._drop_session(old)

    def _drop_session(self, session_id: str) -> None:
        """Forget a session, its tasks and their dead letters (the lock is held)."""
        session = self._sessions.pop(session_id)
        self._unindex(session.status, self._session_number.pop(session_id), session_id)
        for task_id in self._session_tasks.pop(session_id, ()):
            self._tasks.pop(task_id, None)
            self._inflight.pop(task_id, None)
            self._dead.pop(task_id, None)  # a dead letter goes with its run

    async def prune_finished(
        self, *, finished_before: datetime | None, keep: int, batch: int = 500
    ) -> int:
        with self._lock:
            finished = [s for s in self._sessions.values() if s.status in _FINISHED]
            finished.sort(key=lambda s: self._session_number[s.session_id], reverse=True)
            victims = [
                s.session_id
                for i, s in enumerate(finished)
                if i >= keep
                or (finished_before and s.finished_at and s.finished_at < finished_before)
            ][:batch]
            for session_id in victims:
                self._drop_session(session_id)
            return len(victims)

    # --- tasks ------------------------------------------------------------------------------
    async def save_tasks(self, tasks: Iterable[TaskRun]) -> None:
        with self._lock:
            self._put_tasks(tasks)

    async def save_run(
        self, session: Session, tasks: Iterable[TaskRun], *, queued: Collection[str] = ()
    ) -> None:
        tasks = list(tasks)
        with self._lock:
            self._put_tasks(tasks)
            self._put_session(session)
            for task in tasks:
                if task.task_id in queued:
                    self._put_in_queue(task.task_id, task.priority, ready_time(task))

    def _put_tasks(self, tasks: Iterable[TaskRun]) -> None:
        for task in tasks:
            if task.task_id not in self._tasks:
                self._session_tasks.setdefault(task.session_id, []).append(task.task_id)
            self._tasks[task.task_id] = task
            self._track_inflight(task)

    async def get_task(self, task_id: str) -> TaskRun | None:
        return self._tasks.get(task_id)

    async def session_tasks(self, session_id: str) -> list[TaskRun]:
        with self._lock:
            return [self._tasks[t] for t in self._session_tasks.get(session_id, ())]

    async def session_with_tasks(self, session_id: str) -> tuple[Session | None, list[TaskRun]]:
        with self._lock:
            tasks = [self._tasks[t] for t in self._session_tasks.get(session_id, ())]
            return self._sessions.get(session_id), tasks

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
        update = TaskUpdate(changes, expect, attempt, release_slot_of)
        with self._lock:
            changed = self._change_task(task_id, update, enqueue_at, claim_slot_of)
            if changed is not None and ack_entry:
                self._acknowledge(task_id)
            return changed

    async def update_task_and_next(self, task_id: str, update: TaskUpdate) -> TaskWritten:
        with self._lock:
            task = self._change_task(task_id, update)
            if task is None:
                return TaskWritten(None)
            return TaskWritten(task, self._queue_next(update.then), self._end_run(update.ends_run))

    def _change_task(
        self,
        task_id: str,
        update: TaskUpdate,
        enqueue_at: datetime | None = None,
        claim_slot_of: str | None = None,
    ) -> TaskRun | None:
        """``update_task``; the caller holds the lock."""
        release_slot_of = update.release_slot_of
        task = self._tasks.get(task_id)
        if task is None or not task_change_applies(task, update.expect, update.attempt):
            return None
        if claim_slot_of is not None:
            claimed = slot_taken(self._agents.get(claim_slot_of), task_id)
            if claimed is not None:
                self._agents[claimed.agent_id] = claimed
        task = task.model_copy(update=update.changes)
        self._tasks[task_id] = task
        self._track_inflight(task)
        agent = self._agents.get(release_slot_of) if release_slot_of else None
        released = slot_released(agent, task_id) if agent is not None else None
        if released is not None:
            self._agents[released.agent_id] = released
        if enqueue_at is not None:
            self._put_in_queue(task_id, task.priority, enqueue_at)
        return task

    async def inflight_tasks(self, due_by: datetime | None = None) -> list[TaskRun]:
        with self._lock:
            return [
                self._tasks[t]
                for t, due in self._inflight.items()
                if due_by is None or (due is not None and due <= due_by)
            ]
