"""MemoryStorage: agents, their state history and task slots."""

from __future__ import annotations

import itertools
from collections import Counter, deque
from collections.abc import Collection
from datetime import datetime
from typing import Any

from ...models import (
    Agent,
    Page,
    StateRecord,
)
from ..report_and_task import ReportPlan, ReportWritten, planned
from ..rules import apply_state, slot_claimed, slot_released
from .base import _page
from .runs import RunRecords


class AgentRecords(RunRecords):
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

    async def agents_by_state(self) -> dict[str | None, int]:
        with self._lock:
            return dict(Counter(a.state for a in self._agents.values()))

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
            return self._record_state(record, history_limit)

    def _record_state(self, record: StateRecord, history_limit: int) -> tuple[Agent, bool]:
        """``record_state``; the caller holds the lock."""
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

    async def record_report(
        self, record: StateRecord, *, history_limit: int, plan: ReportPlan
    ) -> ReportWritten:
        with self._lock:
            agent, duplicate = self._record_state(record, history_limit)
            if duplicate:
                return ReportWritten(agent, True)
            task_id = plan.task_of(agent, record)
            done = planned(plan, agent, record, self._tasks.get(task_id) if task_id else None)
            if done is None:
                return ReportWritten(agent, False)
            update, task, agent = done
            self._tasks[task.task_id] = task
            self._track_inflight(task)
            self._agents[agent.agent_id] = agent
            queued, ended = self._queue_next(update.then), self._end_run(update.ends_run)
            return ReportWritten(agent, False, task, update, queued, ended)

    async def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        with self._lock:
            history = self._history.get(agent_id, ())
            total = len(history)
            raw = list(itertools.islice(history, offset, offset + limit))
        items = [StateRecord.model_validate_json(r) for r in raw]
        return Page(items=items, total=total, offset=offset, limit=limit)

    async def available_agents(self, states: Collection[str]) -> list[Agent]:
        with self._lock:
            return self._agents.available(states)  # kept as agents are written (fleet.py)

    async def stale_agents(
        self, *, seen_before: datetime, exclude_state: str | None = None
    ) -> list[Agent]:
        with self._lock:
            return [
                a
                for a in self._agents.values()
                if a.last_seen < seen_before and (exclude_state is None or a.state != exclude_state)
            ]

    async def hold_report(self, record: StateRecord, *, max_agents: int) -> bool:
        with self._lock:
            held = self._held.get(record.agent_id)
            if held is None and len(self._held) >= max_agents:
                return False
            if held is None or held.timestamp <= record.timestamp:
                self._held[record.agent_id] = record
            return True

    async def take_held_report(self, agent_id: str) -> StateRecord | None:
        with self._lock:
            return self._held.pop(agent_id, None)

    async def drop_held_reports(self, *, received_before: datetime) -> list[StateRecord]:
        with self._lock:
            old = [r for r in self._held.values() if r.received_at < received_before]
            for record in old:
                del self._held[record.agent_id]
            return old

    async def claim_agent_slot(self, agent_id: str, task_id: str) -> bool:
        with self._lock:
            agent = self._agents.get(agent_id)
            if agent is None:
                return False
            changed, held = slot_claimed(agent, task_id)
            if changed is not None:
                self._agents[agent_id] = changed
            return held

    async def release_agent_slot(self, agent_id: str, task_id: str) -> None:
        with self._lock:
            agent = self._agents.get(agent_id)
            changed = slot_released(agent, task_id) if agent is not None else None
            if changed is not None:
                self._agents[agent_id] = changed
