"""SQLiteStorage: agents, their state history and task slots."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from datetime import datetime
from typing import Any

from ...models import (
    Agent,
    Page,
    StateRecord,
    TaskRun,
)
from ..fleet import AvailableAgents
from ..report_and_task import ReportPlan, ReportWritten, planned
from ..rules import apply_state, slot_claimed, slot_released
from .base import _doc, _load
from .calls import FileLockedError, off_loop, quick, scan
from .runs import RunRecords

# A whole read of the available agents (after another connection wrote the file) runs on
# the event loop while the last read found at most this many (a read of 64 rows, their
# records parsed already, takes tens of microseconds); a larger fleet is read whole on the
# store's thread. A fleet that grew past it between two reads is read once on the loop, then
# on the thread. Reads of what changed run on the loop whatever the fleet's size.
LOOP_FLEET = 64


class AgentRecords(RunRecords):
    # --- agents -----------------------------------------------------------------------------
    @quick
    def create_agent(self, agent: Agent) -> Agent | None:
        with self._tx() as db:
            existing = self._get_agent(db, agent.agent_id)
            if existing is None:
                self._put_agent(db, agent)
            return existing

    @quick
    def save_agent(self, agent: Agent) -> None:
        with self._tx() as db:
            self._put_agent(db, agent)

    @quick
    def get_agent(self, agent_id: str) -> Agent | None:
        with self._tx(write=False) as db:
            return self._get_agent(db, agent_id)

    @scan
    def list_agents(
        self, *, state: str | None, capability: str | None, offset: int, limit: int
    ) -> Page[Agent]:
        where, args = ["1=1"], []
        if state is not None:
            where.append("state = ?")
            args.append(state)
        if capability is not None:
            where.append("EXISTS (SELECT 1 FROM json_each(doc, '$.capabilities') WHERE value = ?)")
            args.append(capability)
        clause = " AND ".join(where)
        with self._tx(write=False) as db:
            total = db.execute(f"SELECT COUNT(*) FROM agents WHERE {clause}", args).fetchone()[0]
            rows = db.execute(
                f"SELECT doc FROM agents WHERE {clause} ORDER BY agent_id LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return Page(
            items=[_load(Agent, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    @scan
    def agents_by_state(self) -> dict[str | None, int]:
        with self._tx(write=False) as db:
            rows = db.execute("SELECT state, COUNT(*) FROM agents GROUP BY state").fetchall()
        return {state: count for state, count in rows}

    @off_loop
    def delete_agent(self, agent_id: str) -> Agent | None:
        with self._tx() as db:
            agent = self._get_agent(db, agent_id)
            self._fleet_changes.wrote(agent_id)
            db.execute("DELETE FROM agents WHERE agent_id=?", (agent_id,))
            db.execute("DELETE FROM state_history WHERE agent_id=?", (agent_id,))
        return agent

    @quick
    def update_agent(self, agent_id: str, changes: dict[str, Any]) -> Agent | None:
        with self._tx() as db:
            agent = self._get_agent(db, agent_id)
            if agent is None:
                return None
            agent = agent.model_copy(update=changes)
            self._put_agent(db, agent)
            return agent

    @quick
    def record_state(self, record: StateRecord, *, history_limit: int) -> tuple[Agent, bool]:
        with self._tx() as db:
            agent, duplicate = apply_state(self._get_agent(db, record.agent_id), record)
            if not duplicate:
                self._write_state(db, agent, record, history_limit)
            return agent, duplicate

    @quick
    def record_report(
        self, record: StateRecord, *, history_limit: int, plan: ReportPlan
    ) -> ReportWritten:
        with self._tx() as db:
            agent, duplicate = apply_state(self._get_agent(db, record.agent_id), record)
            if duplicate:
                return ReportWritten(agent, True)
            task_id = plan.task_of(agent, record)
            row = None
            if task_id is not None:
                row = db.execute(
                    "SELECT doc, seq FROM tasks WHERE task_id=?", (task_id,)
                ).fetchone()
            done = planned(plan, agent, record, _load(TaskRun, row[0]) if row else None)
            if done is None or row is None:
                self._write_state(db, agent, record, history_limit)
                return ReportWritten(agent, False)
            update, task, agent = done
            self._write_state(db, agent, record, history_limit)
            self._put_task(db, task, row[1])
            queued = self._queue_next(db, update.then)
            ended = self._end_run(db, update.ends_run)
            return ReportWritten(agent, False, task, update, queued, ended)

    def _write_state(
        self, db: sqlite3.Connection, agent: Agent, record: StateRecord, history_limit: int
    ) -> None:
        """The agent with its new state, and the report on top of its bounded history (trimmed
        in steps: ``history_trims.py``)."""
        self._put_agent(db, agent)
        db.execute(
            "INSERT INTO state_history (agent_id, doc) VALUES (?, ?)",
            (agent.agent_id, _doc(record)),
        )
        if not self._history_trims.due(agent.agent_id, history_limit):
            return
        db.execute(
            "DELETE FROM state_history WHERE agent_id = ? AND id <= (SELECT id FROM "
            "state_history WHERE agent_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (agent.agent_id, agent.agent_id, history_limit),
        )

    @scan
    def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        with self._tx(write=False) as db:
            total = db.execute(
                "SELECT COUNT(*) FROM state_history WHERE agent_id=?", (agent_id,)
            ).fetchone()[0]
            rows = db.execute(
                "SELECT doc FROM state_history WHERE agent_id=? ORDER BY id DESC LIMIT ? OFFSET ?",
                (agent_id, limit, offset),
            ).fetchall()
        return Page(
            items=[_load(StateRecord, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    async def available_agents(self, states: Collection[str]) -> list[Agent]:
        """The agents written since the last read, read by id on the event loop, while no
        other connection wrote the file (``fleet.py``); otherwise every available agent: on
        the event loop while the last read found a small fleet, on the store's thread before
        the first read and for a large one. The dispatcher asks at every pass that has work,
        and for a few agents the thread's hop cost more than the read: about 85 us of CPU,
        and the wake-ups of the thread and then of the loop in each task's latency."""
        wanted = states if isinstance(states, frozenset) else frozenset(states)
        changes = self._fleet_changes
        async with changes.lock:
            if changes.follows(wanted):
                try:
                    with self._tx(write=False) as db:
                        rows = changes.changed_rows(db, wanted)
                except FileLockedError:
                    rows = None
                if rows is not None:
                    self._fleet.changed(rows)
                    return self._fleet.available(wanted)
            try:
                with self._tx(write=False) as db:
                    version: int | None = changes.start_whole(db)
            except FileLockedError:
                version = None  # this read is whole, and so is the next
            if self._fleet.read and len(self._fleet) <= LOOP_FLEET:
                found = await self._whole_on_loop(wanted)
            else:
                found = await self._whole_on_thread(wanted)
            if version is not None:
                changes.whole_read(version, wanted)
            return found

    def _read_whole(self, states: frozenset[str]) -> AvailableAgents:
        """Every agent in ``states``, into the view; those with a free slot, without the
        view's index by capability: it is built at the next read of what changed, which
        keeps it up to date, and not at all while every read is whole (another process
        writes the file), where building it at each read cost more than the read (10,000
        agents: 12 ms)."""
        marks = ",".join("?" * len(states))
        with self._tx(write=False) as db:
            rows = db.execute(
                f"SELECT agent_id, doc FROM agents WHERE state IN ({marks})", list(states)
            ).fetchall()
        agents = self._fleet.agents((r[0], r[1]) for r in rows)
        return AvailableAgents(a for a in agents if len(a.active_tasks) < a.max_concurrency)

    _whole_on_loop = quick(_read_whole)
    _whole_on_thread = scan(_read_whole)

    @scan
    def stale_agents(
        self, *, seen_before: datetime, exclude_state: str | None = None
    ) -> list[Agent]:
        with self._tx(write=False) as db:
            if exclude_state is None:
                rows = db.execute(
                    "SELECT doc FROM agents WHERE last_seen < ?", (seen_before.timestamp(),)
                ).fetchall()
            else:
                rows = db.execute(
                    "SELECT doc FROM agents WHERE last_seen < ? AND (state IS NULL OR state != ?)",
                    (seen_before.timestamp(), exclude_state),
                ).fetchall()
        return [_load(Agent, r[0]) for r in rows]

    @quick
    def hold_report(self, record: StateRecord, *, max_agents: int) -> bool:
        with self._tx() as db:
            held = db.execute(
                "SELECT timestamp FROM held_reports WHERE agent_id=?", (record.agent_id,)
            ).fetchone()
            if held is None:
                (count,) = db.execute("SELECT COUNT(*) FROM held_reports").fetchone()
                if count >= max_agents:
                    return False
            elif held[0] > record.timestamp.timestamp():
                return True  # a newer report is already held
            db.execute(
                "INSERT OR REPLACE INTO held_reports VALUES (?, ?, ?, ?)",
                (
                    record.agent_id,
                    record.received_at.timestamp(),
                    record.timestamp.timestamp(),
                    _doc(record),
                ),
            )
            return True

    @quick
    def take_held_report(self, agent_id: str) -> StateRecord | None:
        with self._tx() as db:
            row = db.execute(
                "DELETE FROM held_reports WHERE agent_id=? RETURNING doc", (agent_id,)
            ).fetchone()
        return _load(StateRecord, row[0]) if row else None

    @off_loop
    def drop_held_reports(self, *, received_before: datetime) -> list[StateRecord]:
        with self._tx() as db:
            rows = db.execute(
                "DELETE FROM held_reports WHERE received_at < ? RETURNING doc",
                (received_before.timestamp(),),
            ).fetchall()
        return [_load(StateRecord, r[0]) for r in rows]

    @quick
    def claim_agent_slot(self, agent_id: str, task_id: str) -> bool:
        with self._tx() as db:
            agent = self._get_agent(db, agent_id)
            if agent is None:
                return False
            changed, held = slot_claimed(agent, task_id)
            if changed is not None:
                self._put_agent(db, changed)
            return held

    @quick
    def release_agent_slot(self, agent_id: str, task_id: str) -> None:
        with self._tx() as db:
            agent = self._get_agent(db, agent_id)
            changed = slot_released(agent, task_id) if agent is not None else None
            if changed is not None:
                self._put_agent(db, changed)
