"""RedisStorage: agents, their state history and task slots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from ...models import (
    Agent,
    Page,
    StateRecord,
)
from ..parsed import PARSED
from ..rules import apply_state, slot_claimed, slot_released
from .base import (
    _Base,
    _load,
    _page,
)
from .history import Span, deletions

# KEYS: held reports (hash agent -> JSON), when each was received (zset), each report's own
# timestamp (hash). ARGV: agent, JSON, received at, report timestamp, max agents.
# A newer report replaces an older one; no new agent past the bound.
_HOLD = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return 0 end
else
  local stamp = redis.call('HGET', KEYS[3], ARGV[1])
  if stamp and tonumber(stamp) > tonumber(ARGV[4]) then return 1 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
return 1
"""
_DROP_HELD = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1])
local out = {}
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw then table.insert(out, raw) end
  redis.call('HDEL', KEYS[1], id)
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
end
return out
"""


# tasks of the reporting agent read along with its state change, for the report's outcomes
READ_ALONG_TASKS = 4


class AgentRecords(_Base):
    # --- agents -----------------------------------------------------------------------------
    async def _all_agents(self, *, whole: bool = False) -> list[Agent]:
        await self._read_fleet(whole=whole)
        return self._fleet.all()

    async def _read_fleet(self, *, whole: bool = False) -> None:
        """The view of the fleet brought up to date: read whole, or only the agents Redis
        named as written since the last read (``fleet_feed.py``). One read at a time, each
        applied before the next begins, so the view never goes back to an older record.
        ``whole``: every agent, whatever the feed says (a list an operator asked for must
        show a write another replica answered a moment ago, before Redis's message of it
        reaches this one)."""
        async with self._fleet_read:
            keys = None if whole else self._feed.plan()
            if keys == []:
                return  # nothing written since the last read
            try:
                if keys is None:
                    reply = await self._script(
                        "records", keys=[self.k("agents")], args=["set", self._feed.prefix]
                    )
                else:
                    reply = await self._batched("MGET", *keys)
            except BaseException:
                self._feed.failed()  # the next read is whole
                raise
            if keys is None:  # ids and records, alternating
                if self._seen.has_room_for(len(reply) // 2):
                    self._remember(reply, "agent")
                self._fleet.agents(zip(reply[::2], reply[1::2], strict=True))
                return
            cut = len(self._feed.prefix)
            for key, raw in zip(keys, reply, strict=True):
                self._seen.put(key, raw)  # a guess for the slot claim that may follow
            self._fleet.changed((key[cut:], raw) for key, raw in zip(keys, reply, strict=True))

    async def create_agent(self, agent: Agent) -> Agent | None:
        key = self.k("agent", agent.agent_id)

        def decide(raw: str | None) -> tuple[str | None, Agent | None, Any]:
            if raw is not None:
                return None, _load(Agent, raw), None
            return PARSED.dump(agent), None, lambda p: p.sadd(self.k("agents"), agent.agent_id)

        return await self._cas(key, decide)

    async def save_agent(self, agent: Agent) -> None:
        raw = PARSED.dump(agent)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self.k("agent", agent.agent_id), raw)
            pipe.sadd(self.k("agents"), agent.agent_id)
            try:
                await pipe.execute()
            finally:
                self._feed.touched([self.k("agent", agent.agent_id)])
        self._seen.put(self.k("agent", agent.agent_id), raw)

    async def get_agent(self, agent_id: str) -> Agent | None:
        return _load(Agent, await self._get(self.k("agent", agent_id)))

    async def list_agents(
        self, *, state: str | None, capability: str | None, offset: int, limit: int
    ) -> Page[Agent]:
        agents = [
            a
            for a in await self._all_agents(whole=True)
            if (state is None or a.state == state)
            and (capability is None or capability in a.capabilities)
        ]
        agents.sort(key=lambda a: a.agent_id)
        return _page(agents, offset, limit)

    async def agents_by_state(self) -> dict[str | None, int]:
        # no index by state here: one read of the fleet (parsed only where it changed)
        return dict(Counter(a.state for a in await self._all_agents()))

    async def delete_agent(self, agent_id: str) -> Agent | None:
        key, span_key = self.k("agent", agent_id), self._history_span_key(agent_id)

        def decide(raws: list[str | None]) -> tuple[list[str | None], Agent | None, Any]:
            raw = raws[0]
            span = Span.parse(raws[1])

            def ops(p: Any) -> None:
                old = self._listed_history_keys(agent_id)
                numbered = range(span.low, span.next)
                for keys in deletions(
                    self._history_prefix(agent_id), numbered, key, span_key, *old
                ):
                    p.delete(*keys)
                p.srem(self.k("agents"), agent_id)

            return [None, None], _load(Agent, raw), ops if raw is not None else None

        removed = await self._cas_many([key, span_key], decide)
        self._seen.forget(key)
        self._seen.forget(span_key)
        return removed

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
            return PARSED.dump(updated), updated, None

        return await self._cas(self.k("agent", agent_id), decide)

    async def update_agent(self, agent_id: str, changes: dict[str, Any]) -> Agent | None:
        return await self._update_agent(agent_id, lambda a: a.model_copy(update=changes))

    async def record_state(self, record: StateRecord, *, history_limit: int) -> tuple[Agent, bool]:
        keys = [self.k("agent", record.agent_id), self._history_span_key(record.agent_id)]

        def decide(raws: list[str | None]) -> tuple[list[str | None], tuple[Agent, bool], Any]:
            agent, duplicate = apply_state(_load(Agent, raws[0]), record)
            if duplicate:
                return [None, None], (agent, True), None
            span, add_history = self._add_history(raws[1], record, history_limit)

            def ops(p: Any) -> None:
                add_history(p)
                # the report is applied to these tasks next (workflow/reports.py)
                for task_id in agent.active_tasks[:READ_ALONG_TASKS]:
                    p.read(self.k("task", task_id))

            return [PARSED.dump(agent), span], (agent, False), ops

        return await self._cas_many(keys, decide)

    def _history_span_key(self, agent_id: str) -> str:
        """Which numbered reports the agent's history holds (``history.Span``)."""
        return self.k("history_span", agent_id)

    def _listed_history_keys(self, agent_id: str) -> tuple[str, str]:
        """The list an earlier version kept the agent's history in, and its count of what it
        shows (``history.py``): read after the numbered reports until a step drops them."""
        return self.k("history", agent_id), self.k("history_kept", agent_id)

    def _history_prefix(self, agent_id: str) -> str:
        """The agent's numbered reports' keys, but for their number."""
        return self.k("hist", agent_id, "")

    def _add_history(
        self, span_raw: str | None, record: StateRecord, kept: int
    ) -> tuple[str, Callable[[Any], None]]:
        """The report joins its agent's state history (``history.py``), in the
        compare-and-set that writes the agent and the span: the span's new value, and the
        writes to add to that compare-and-set (the report's own key, written in its MSET;
        the oldest reports' deletion, every quarter of ``kept``)."""
        agent_id = record.agent_id
        span, number, dropped = Span.parse(span_raw).add(kept)
        prefix = self._history_prefix(agent_id)

        def ops(p: Any) -> None:
            p.put(prefix + str(number), PARSED.dump(record))
            if dropped:
                # the list an earlier version kept is older still: it goes with the first step
                for keys in deletions(prefix, dropped, *self._listed_history_keys(agent_id)):
                    p.delete(*keys)

        return span.dump(), ops

    async def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        """The newest the agent's history shows, numbered reports first, then those of a list
        an earlier version kept (``history.py``), in one round trip."""
        keys = [self._history_span_key(agent_id), *self._listed_history_keys(agent_id)]
        total, *raws = await self._script(
            "history_page", keys=keys, args=[self._history_prefix(agent_id), offset, limit]
        )
        items = [StateRecord.model_validate_json(r) for r in raws]
        return Page(items=items, total=int(total), offset=offset, limit=limit)

    async def available_agents(self, states: Collection[str]) -> list[Agent]:
        await self._read_fleet()
        return self._fleet.available(states)

    async def stale_agents(
        self, *, seen_before: datetime, exclude_state: str | None = None
    ) -> list[Agent]:
        return [
            a
            for a in await self._all_agents()
            if a.last_seen < seen_before and (exclude_state is None or a.state != exclude_state)
        ]

    async def hold_report(self, record: StateRecord, *, max_agents: int) -> bool:
        held = await self._redis.eval(
            _HOLD,
            3,
            self.k("held"),
            self.k("held", "at"),
            self.k("held", "ts"),
            record.agent_id,
            PARSED.dump(record),
            record.received_at.timestamp(),
            record.timestamp.timestamp(),
            max_agents,
        )
        return bool(held)

    async def take_held_report(self, agent_id: str) -> StateRecord | None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hget(self.k("held"), agent_id)
            pipe.hdel(self.k("held"), agent_id)
            pipe.zrem(self.k("held", "at"), agent_id)
            pipe.hdel(self.k("held", "ts"), agent_id)
            raw, removed, _, _ = await pipe.execute()
        return _load(StateRecord, raw) if removed else None

    async def drop_held_reports(self, *, received_before: datetime) -> list[StateRecord]:
        raws = await self._redis.eval(
            _DROP_HELD,
            3,
            self.k("held"),
            self.k("held", "at"),
            self.k("held", "ts"),
            received_before.timestamp(),
        )
        return [r for r in (_load(StateRecord, raw) for raw in raws) if r is not None]

    async def claim_agent_slot(self, agent_id: str, task_id: str) -> bool:
        held = [False]

        def change(agent: Agent) -> Agent | None:
            # decide() runs again when a concurrent write wins the race: so does this
            changed, held[0] = slot_claimed(agent, task_id)
            return changed

        await self._update_agent(agent_id, change)
        return held[0]

    async def release_agent_slot(self, agent_id: str, task_id: str) -> None:
        await self._update_agent(agent_id, lambda agent: slot_released(agent, task_id))
