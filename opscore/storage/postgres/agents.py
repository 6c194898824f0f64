"""PostgresStorage: agents, their state history and task slots."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from ...models import Agent, Page, StateRecord
from ..parsed import PARSED
from ..rules import apply_state, slot_claimed, slot_released
from .base import Write, _Base, _load, doc_unless
from .upkeep import HISTORY

_READ_AGENT = "SELECT doc FROM opscore_agents WHERE agent_id = $1"
# compare-and-set: $5 is the document the change was decided on
# (as every compare-and-set write: whether it wrote, and else the row's current document)
_SET_AGENT = f"""
WITH changed AS (
    UPDATE opscore_agents SET state = $2, last_seen = $3, doc = $4
    WHERE agent_id = $1 AND doc = $5 RETURNING 1)
SELECT (SELECT 1 FROM changed),
    {doc_unless("EXISTS (SELECT 1 FROM changed)", "opscore_agents", "agent_id", "$1")}
"""
# once the agent's row is `changed`: the report $5 on top of its history, trimmed to $7
# entries, and `added` answers $6. $7 is -1 when this report does not trim (history_trims.py):
# the DELETE's conditions on parameters alone are checked before its scan, so it reads nothing
HISTORY_AFTER_CHANGE = """
trimmed AS (
    DELETE FROM opscore_state_history WHERE $7::int >= 0 AND EXISTS (SELECT 1 FROM changed)
    AND agent_id = $1 AND id <= (SELECT id FROM opscore_state_history WHERE agent_id = $1
               ORDER BY id DESC LIMIT 1 OFFSET greatest($7::int, 0))),
added AS (
    INSERT INTO opscore_state_history (agent_id, doc) SELECT agent_id, $5 FROM changed
    RETURNING $6::int AS written)"""
# ... and a state report: the new state, its history record, the history trimmed to $7
_SET_STATE = f"""
WITH changed AS (
    UPDATE opscore_agents SET state = $2, last_seen = $3, doc = $4
    WHERE agent_id = $1 AND doc = $8 RETURNING agent_id),{HISTORY_AFTER_CHANGE}
SELECT (SELECT written FROM added),
    {doc_unless("EXISTS (SELECT 1 FROM added)", "opscore_agents", "agent_id", "$1")}
"""
_PUT_AGENT = (
    "INSERT INTO opscore_agents (agent_id, state, last_seen, doc) VALUES ($1, $2, $3, $4) "
    "ON CONFLICT (agent_id) DO UPDATE SET state = $2, last_seen = $3, doc = $4"
)


class AgentRecords(_Base):
    def _history_offset(self, agent_id: str, history_limit: int) -> int:
        """``$7`` of ``HISTORY_AFTER_CHANGE``: how many reports before this one are kept, or -1
        when this report does not trim the history (``history_trims.py``)."""
        self._vacuums.left(HISTORY)  # a record now, trimmed later
        if self._history_trims.due(agent_id, history_limit):
            return max(history_limit - 1, 0)
        return -1

    async def _put_agent(self, conn: Any, agent: Agent) -> None:
        raw = PARSED.dump(agent)
        await conn.execute(_PUT_AGENT, agent.agent_id, agent.state, agent.last_seen, raw)
        self._seen.put(f"agent:{agent.agent_id}", raw)

    async def _change_agent(
        self, agent_id: str, change: Callable[[Agent], Agent | None]
    ) -> Agent | None:
        """Compare-and-set of one agent: ``change`` returns the new agent, or None to leave
        it. Returns the agent as it now is (None when absent)."""

        def decide(doc: str | None) -> tuple[Write, Agent | None]:
            if doc is None:
                return None, None
            agent = _load(Agent, doc)
            changed = change(agent)
            if changed is None:
                return None, agent
            raw = PARSED.dump(changed)
            return (_SET_AGENT, (agent_id, changed.state, changed.last_seen, raw), raw), changed

        return await self._cas(f"agent:{agent_id}", _READ_AGENT, agent_id, decide)

    async def create_agent(self, agent: Agent) -> Agent | None:
        async with self._conn() as conn:
            inserted = await conn.fetchval(
                "INSERT INTO opscore_agents (agent_id, state, last_seen, doc) "
                "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING 1",
                agent.agent_id,
                agent.state,
                agent.last_seen,
                PARSED.dump(agent),
            )
            if inserted:
                self._seen.forget(f"agent:{agent.agent_id}")
                return None
            doc = await conn.fetchval(_READ_AGENT, agent.agent_id)
        self._seen.put(f"agent:{agent.agent_id}", doc)
        return _load(Agent, doc) if doc is not None else None

    async def save_agent(self, agent: Agent) -> None:
        async with self._conn() as conn:
            await self._put_agent(conn, agent)

    async def get_agent(self, agent_id: str) -> Agent | None:
        async with self._conn() as conn:
            doc = await conn.fetchval(_READ_AGENT, agent_id)
        self._seen.put(f"agent:{agent_id}", doc)
        return _load(Agent, doc) if doc is not None else None

    async def list_agents(
        self, *, state: str | None, capability: str | None, offset: int, limit: int
    ) -> Page[Agent]:
        where = (
            "($1::text IS NULL OR state = $1) AND "
            "($2::text IS NULL OR (doc::jsonb -> 'capabilities') ? $2)"
        )
        async with self._conn() as conn:
            total = await conn.fetchval(
                f"SELECT count(*) FROM opscore_agents WHERE {where}", state, capability
            )
            rows = await conn.fetch(
                f"SELECT doc FROM opscore_agents WHERE {where} "
                "ORDER BY agent_id LIMIT $3 OFFSET $4",
                state,
                capability,
                limit,
                offset,
            )
        return Page(
            items=[_load(Agent, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    async def agents_by_state(self) -> dict[str | None, int]:
        async with self._conn() as conn:
            rows = await conn.fetch("SELECT state, count(*) FROM opscore_agents GROUP BY state")
        return {state: count for state, count in rows}

    async def delete_agent(self, agent_id: str) -> Agent | None:
        async with self._tx() as conn:
            doc = await conn.fetchval(
                "DELETE FROM opscore_agents WHERE agent_id = $1 RETURNING doc", agent_id
            )
            await conn.execute("DELETE FROM opscore_state_history WHERE agent_id = $1", agent_id)
        self._seen.forget(f"agent:{agent_id}")
        return _load(Agent, doc) if doc is not None else None

    async def update_agent(self, agent_id: str, changes: dict[str, Any]) -> Agent | None:
        return await self._change_agent(agent_id, lambda a: a.model_copy(update=changes))

    async def record_state(self, record: StateRecord, *, history_limit: int) -> tuple[Agent, bool]:
        return await self._record_state(
            record, self._history_offset(record.agent_id, history_limit)
        )

    async def _record_state(self, record: StateRecord, kept: int) -> tuple[Agent, bool]:
        """``record_state``, its history kept as ``kept`` says (``_history_offset``)."""

        def decide(doc: str | None) -> tuple[Write, tuple[Agent, bool]]:
            agent, duplicate = apply_state(_load(Agent, doc) if doc else None, record)
            if duplicate:
                return None, (agent, True)
            raw = PARSED.dump(agent)
            args = (
                agent.agent_id,
                agent.state,
                agent.last_seen,
                raw,
                PARSED.dump(record),
                1,
                kept,
            )
            return (_SET_STATE, args, raw), (agent, False)

        return await self._cas(f"agent:{record.agent_id}", _READ_AGENT, record.agent_id, decide)

    async def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        async with self._conn() as conn:
            total = await conn.fetchval(
                "SELECT count(*) FROM opscore_state_history WHERE agent_id = $1", agent_id
            )
            rows = await conn.fetch(
                "SELECT doc FROM opscore_state_history WHERE agent_id = $1 "
                "ORDER BY id DESC LIMIT $2 OFFSET $3",
                agent_id,
                limit,
                offset,
            )
        return Page(
            items=[_load(StateRecord, r[0]) for r in rows], total=total, offset=offset, limit=limit
        )

    async def available_agents(self, states: Collection[str]) -> list[Agent]:
        """The agents in ``states`` with a free slot, from a read of what changed since the
        last one (``fleet.py``)."""
        await self._fleet_since.read(self._conn, self._seen, self._fleet)
        return self._fleet.available(states)

    async def stale_agents(
        self, *, seen_before: datetime, exclude_state: str | None = None
    ) -> list[Agent]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT doc FROM opscore_agents WHERE last_seen < $1 "
                "AND ($2::text IS NULL OR state IS NULL OR state <> $2)",
                seen_before,
                exclude_state,
            )
        return [_load(Agent, r[0]) for r in rows]

    async def hold_report(self, record: StateRecord, *, max_agents: int) -> bool:
        async with self._tx() as conn:
            # one writer at a time, so the bound on how many agents are held is exact
            await conn.execute("LOCK TABLE opscore_held_reports IN SHARE ROW EXCLUSIVE MODE")
            held = await conn.fetchval(
                "SELECT reported_at FROM opscore_held_reports WHERE agent_id = $1",
                record.agent_id,
            )
            if held is None:
                count = await conn.fetchval("SELECT count(*) FROM opscore_held_reports")
                if count >= max_agents:
                    return False
            elif held > record.timestamp:
                return True  # a newer report is already held
            await conn.execute(
                "INSERT INTO opscore_held_reports VALUES ($1, $2, $3, $4) ON CONFLICT (agent_id) "
                "DO UPDATE SET received_at = $2, reported_at = $3, doc = $4",
                record.agent_id,
                record.received_at,
                record.timestamp,
                PARSED.dump(record),
            )
            return True

    async def take_held_report(self, agent_id: str) -> StateRecord | None:
        async with self._conn() as conn:
            doc = await conn.fetchval(
                "DELETE FROM opscore_held_reports WHERE agent_id = $1 RETURNING doc", agent_id
            )
        return _load(StateRecord, doc) if doc is not None else None

    async def drop_held_reports(self, *, received_before: datetime) -> list[StateRecord]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "DELETE FROM opscore_held_reports WHERE received_at < $1 RETURNING doc",
                received_before,
            )
        return [_load(StateRecord, r[0]) for r in rows]

    async def claim_agent_slot(self, agent_id: str, task_id: str) -> bool:
        held = [False]

        def change(agent: Agent) -> Agent | None:
            changed, held[0] = slot_claimed(agent, task_id)  # decided anew per try
            return changed

        await self._change_agent(agent_id, change)
        return held[0]

    async def release_agent_slot(self, agent_id: str, task_id: str) -> None:
        # No NOTIFY: the replica that frees a slot wakes its own dispatcher, which takes work
        # for it from the shared queue; waking every other replica too cost each of them a
        # pass that found nothing (bench/README.md).
        await self._change_agent(agent_id, lambda agent: slot_released(agent, task_id))
