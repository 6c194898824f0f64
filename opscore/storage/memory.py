"""The embedded default store: dicts and heaps in this process, guarded by one lock.

The lock is a ``threading.Lock`` held only around dict and heap operations, never across an
``await``, so each method is atomic for every coroutine and thread of the process.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any, TypeVar

from ..models import (
    Agent,
    DeadLetter,
    Page,
    QueueEntry,
    Session,
    StateRecord,
    TaskRun,
    TaskStatus,
    WorkflowTemplate,
)
from .rules import apply_state

T = TypeVar("T")
_INFLIGHT = {TaskStatus.DISPATCHED, TaskStatus.RUNNING}


def _page(items: list[T], offset: int, limit: int) -> Page[T]:
    return Page(items=items[offset : offset + limit], total=len(items), offset=offset, limit=limit)


class MemoryStorage:
    """Lock-guarded in-memory implementation of ``Storage``."""

    def __init__(self, *, finished_session_limit: int = 10_000) -> None:
        self.finished_session_limit = finished_session_limit
        self._finished: deque[str] = deque()
        self._lock = threading.Lock()
        self._agents: dict[str, Agent] = {}
        # History is kept as JSON bytes: a third of the memory of model objects, and invisible
        # to the cyclic GC, whose full passes over millions of objects stalled requests.
        self._history: dict[str, deque[bytes]] = {}
        self._workflows: dict[str, dict[str, WorkflowTemplate]] = {}
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        # (creation number, id) per status, sorted: dashboards and clients poll "the newest
        # completed" and "how many completed" constantly; this answers without a walk
        self._by_status: dict[str, list[tuple[int, str]]] = {}
        self._session_number: dict[str, int] = {}
        self._session_counter = itertools.count()
        self._tasks: dict[str, TaskRun] = {}
        self._session_tasks: dict[str, list[str]] = {}
        self._inflight: set[str] = set()
        self._ready: list[tuple[int, int, str]] = []
        self._delayed: list[tuple[datetime, int, str, int]] = []
        self._queued: dict[str, int] = {}
        self._seq = itertools.count()
        self._dead: OrderedDict[str, DeadLetter] = OrderedDict()
        self._idempotency: dict[str, tuple[str, datetime]] = {}

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    # --- agents -----------------------------------------------------------------------------
    async def create_agent(self, agent: Agent) -> Agent | None:
        with self._lock:
            existing = self._agents.get(agent.agent_id)
            if existing is not None:
                return existing
            self._agents[agent.agent_id] = agent
            return None

    async def save_agent(self, agent: Agent) -> None:
        with self._lock:
            self._agents[agent.agent_id] = agent

    async def get_agent(self, agent_id: str) -> Agent | None:
        return self._agents.get(agent_id)

    async def list_agents(
        self, *, state: str | None, capability: str | None, offset: int, limit: int
    ) -> Page[Agent]:
        with self._lock:
            agents = list(self._agents.values())
        agents = [
            a
            for a in agents
            if (state is None or a.state == state)
            and (capability is None or capability in a.capabilities)
        ]
        agents.sort(key=lambda a: a.agent_id)
        return _page(agents, offset, limit)

    async def delete_agent(self, agent_id: str) -> Agent | None:
        with self._lock:
            self._history.pop(agent_id, None)
            return self._agents.pop(agent_id, None)

    async def update_agent(self, agent_id: str, changes: dict[str, Any]) -> Agent | None:
        with self._lock:
            agent = self._agents.get(agent_id)
            if agent is None:
                return None
            agent = agent.model_copy(update=changes)
            self._agents[agent_id] = agent
            return agent

    async def record_state(self, record: StateRecord, *, history_limit: int) -> tuple[Agent, bool]:
        with self._lock:
            agent, duplicate = apply_state(self._agents.get(record.agent_id), record)
            if duplicate:
                return agent, True
            self._agents[agent.agent_id] = agent
            history = self._history.get(agent.agent_id)
            if history is None or history.maxlen != history_limit:
                history = deque(history or (), maxlen=history_limit)
                self._history[agent.agent_id] = history
            history.appendleft(record.model_dump_json().encode())
            return agent, False

    async def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        with self._lock:
            history = self._history.get(agent_id, ())
            total = len(history)
            raw = list(itertools.islice(history, offset, offset + limit))
        items = [StateRecord.model_validate_json(r) for r in raw]
        return Page(items=items, total=total, offset=offset, limit=limit)

    async def available_agents(self, states: Collection[str]) -> list[Agent]:
        with self._lock:
            return [
                a
                for a in self._agents.values()
                if a.state in states and len(a.active_tasks) < a.max_concurrency
            ]

    async def stale_agents(self, *, seen_before: datetime, exclude_state: str) -> list[Agent]:
        with self._lock:
            return [
                a
                for a in self._agents.values()
                if a.last_seen < seen_before and a.state != exclude_state
            ]

    async def claim_agent_slot(self, agent_id: str, task_id: str) -> bool:
        with self._lock:
            agent = self._agents.get(agent_id)
            if agent is None or len(agent.active_tasks) >= agent.max_concurrency:
                return False
            if task_id not in agent.active_tasks:
                self._agents[agent_id] = agent.model_copy(
                    update={"active_tasks": [*agent.active_tasks, task_id]}
                )
            return True

    async def release_agent_slot(self, agent_id: str, task_id: str) -> None:
        with self._lock:
            agent = self._agents.get(agent_id)
            if agent is not None and task_id in agent.active_tasks:
                remaining = [t for t in agent.active_tasks if t != task_id]
                self._agents[agent_id] = agent.model_copy(update={"active_tasks": remaining})

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

    async def update_session(
        self, session_id: str, changes: dict[str, Any], *, expect: Collection[str] | None = None
    ) -> Session | None:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None or (expect is not None and session.status not in expect):
                return None
            was_open = session.status == "running"
            session = session.model_copy(update=changes)
            self._put_session(session)
            if was_open and session.status != "running":
                self._retire(session_id)
            return session

    def _retire(self, session_id: str) -> None:
        """Keep only the newest finished sessions (and their tasks): memory stays bounded."""
        self._finished.append(session_id)
        while len(self._finished) > self.finished_session_limit:
            old = self._finished.popleft()
            session = self._sessions.get(old)
            if session is None or session.status == "running":  # re-driven since: keep it
                continue
            del self._sessions[old]
            self._unindex(session.status, self._session_number.pop(old), old)
            for task_id in self._session_tasks.pop(old, ()):
                self._tasks.pop(task_id, None)
                self._inflight.discard(task_id)

    # --- tasks ------------------------------------------------------------------------------
    async def save_tasks(self, tasks: Iterable[TaskRun]) -> None:
        with self._lock:
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

    async def update_task(
        self,
        task_id: str,
        changes: dict[str, Any],
        *,
        expect: Collection[str] | None = None,
        attempt: int | None = None,
    ) -> TaskRun | None:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or (expect is not None and task.status not in expect):
                return None
            if attempt is not None and task.attempts != attempt:
                return None
            task = task.model_copy(update=changes)
            self._tasks[task_id] = task
            self._track_inflight(task)
            return task

    def _track_inflight(self, task: TaskRun) -> None:
        if task.status in _INFLIGHT:
            self._inflight.add(task.task_id)
        else:
            self._inflight.discard(task.task_id)

    async def inflight_tasks(self) -> list[TaskRun]:
        with self._lock:
            return [self._tasks[t] for t in self._inflight]

    # --- queue ------------------------------------------------------------------------------
    async def enqueue(self, task_id: str, *, priority: int, ready_at: datetime) -> None:
        with self._lock:
            seq = next(self._seq)
            self._queued[task_id] = seq
            heapq.heappush(self._delayed, (ready_at, seq, task_id, priority))

    async def dequeue_ready(self, now: datetime, limit: int) -> list[QueueEntry]:
        with self._lock:
            while self._delayed and self._delayed[0][0] <= now:
                _ready_at, seq, task_id, priority = heapq.heappop(self._delayed)
                if self._queued.get(task_id) == seq:
                    heapq.heappush(self._ready, (-priority, seq, task_id))
            entries: list[QueueEntry] = []
            while self._ready and len(entries) < limit:
                neg_priority, seq, task_id = heapq.heappop(self._ready)
                if self._queued.get(task_id) != seq:
                    continue
                del self._queued[task_id]
                entries.append(
                    QueueEntry(task_id=task_id, priority=-neg_priority, ready_at=now, seq=seq)
                )
            return entries

    async def ack(self, task_ids: Iterable[str]) -> None:
        return None  # one process: a dequeued entry cannot be orphaned by another

    async def requeue(self, entries: Iterable[QueueEntry]) -> None:
        with self._lock:
            for entry in entries:
                if entry.task_id in self._queued:
                    continue
                self._queued[entry.task_id] = entry.seq
                heapq.heappush(self._ready, (-entry.priority, entry.seq, entry.task_id))

    async def queue_depth(self) -> int:
        return len(self._queued)

    async def next_ready_at(self) -> datetime | None:
        with self._lock:
            while self._delayed and self._queued.get(self._delayed[0][2]) != self._delayed[0][1]:
                heapq.heappop(self._delayed)
            return self._delayed[0][0] if self._delayed else None

    # --- dead letters and idempotency -------------------------------------------------------
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        with self._lock:
            self._dead.pop(entry.task_id, None)
            self._dead[entry.task_id] = entry

    async def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        with self._lock:
            items = list(reversed(self._dead.values()))
        return _page(items, offset, limit)

    async def pop_dead_letter(self, task_id: str) -> DeadLetter | None:
        with self._lock:
            return self._dead.pop(task_id, None)

    async def remember_idempotency_key(
        self, key: str, session_id: str, *, now: datetime, ttl: float
    ) -> str | None:
        with self._lock:
            found = self._idempotency.get(key)
            if found is not None and (now - found[1]).total_seconds() < ttl:
                return found[0]
            if len(self._idempotency) > 10_000:
                self._idempotency = {
                    k: v for k, v in self._idempotency.items() if (now - v[1]).total_seconds() < ttl
                }
            self._idempotency[key] = (session_id, now)
            return None

    async def forget_idempotency_key(self, key: str) -> None:
        with self._lock:
            self._idempotency.pop(key, None)
