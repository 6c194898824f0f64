"""PostgresStorage: a task handed to an agent, its slot taken in the same statement.

The dispatcher starts every attempt with ``update_task(claim_slot_of=...)``. Written in turn,
that was two statements, the agent's slot and then the task's move, and a third to give the
slot back when the task had moved on meanwhile. Here it is one, on the pattern of
``reports.py``: both rows are locked if (and only if) they still hold the documents decided
on, agent first, then task, and both are written, or neither (``base.AGENT_AND_TASK``, with
the task's queue entry acknowledged when asked).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ...errors import NoFreeSlotError
from ...models import Agent, TaskRun
from ..parsed import PARSED
from ..rules import slot_taken, task_change_applies
from ..seen import UNSEEN
from .agents import _READ_AGENT
from .base import AGENT_AND_TASK, _Base, agent_and_task_args
from .runs import _READ_TASK
from .upkeep import QUEUE


class SlotClaims(_Base):
    async def _claim_and_move(
        self,
        task_id: str,
        changes: dict[str, Any],
        agent_id: str,
        *,
        expect: Collection[str] | None,
        attempt: int | None,
        ack: bool = False,
    ) -> TaskRun | None:
        """The task changed and the agent's slot taken, in one statement (with ``ack``, its
        queue entry acknowledged too); None (no slot taken) when the change does not apply
        to the task; NoFreeSlotError when the agent is full or gone. Decided first on the
        documents this process last saw, as ``_Base._cas``: a refusal is only believed when
        decided on the rows themselves."""
        agent_key, task_key = f"agent:{agent_id}", f"task:{task_id}"
        async with self._turns.turn((agent_key, task_key)), self._conn() as conn:

            async def read(key: str, query: str, ident: str) -> str | None:
                return await self._read_afresh(conn, key, query, ident)

            agent_doc, task_doc = self._seen.get(agent_key), self._seen.get(task_key)
            agent_fresh, task_fresh = agent_doc is UNSEEN, task_doc is UNSEEN
            if agent_fresh:
                agent_doc = await read(agent_key, _READ_AGENT, agent_id)
            if task_fresh:
                task_doc = await read(task_key, _READ_TASK, task_id)
            while True:
                task = PARSED.load(TaskRun, task_doc) if task_doc is not None else None
                if (
                    task_doc is None
                    or task is None
                    or not task_change_applies(task, expect, attempt)
                ):
                    if task_fresh:
                        return None
                    task_doc, task_fresh = await read(task_key, _READ_TASK, task_id), True
                    continue
                try:
                    if agent_doc is None:
                        raise NoFreeSlotError(f"No agent '{agent_id}' to take task '{task_id}'")
                    agent = PARSED.load(Agent, agent_doc)
                    claimed = slot_taken(agent, task_id) or agent  # None: it holds the task
                except NoFreeSlotError:
                    if agent_fresh:
                        raise
                    agent_doc, agent_fresh = await read(agent_key, _READ_AGENT, agent_id), True
                    continue
                moved = task.model_copy(update=changes)
                agent_raw, task_raw = PARSED.dump(claimed), PARSED.dump(moved)
                written, agent_now, task_now, _ = await conn.fetchrow(
                    AGENT_AND_TASK,
                    *agent_and_task_args(
                        (agent_id, claimed.state, claimed.last_seen, agent_raw, agent_doc),
                        (task_id, moved.status.value, task_raw, task_doc),
                        ack=ack,
                    ),
                )
                if written:
                    self._seen.put(agent_key, agent_raw)
                    self._seen.put(task_key, task_raw)
                    if ack:
                        self._vacuums.left(QUEUE)
                    return moved
                # one of them changed since: decide again on what the statement saw
                agent_doc, task_doc, agent_fresh, task_fresh = agent_now, task_now, True, True
                self._seen.put(agent_key, agent_doc)
                self._seen.put(task_key, task_doc)
