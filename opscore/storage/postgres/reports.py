"""PostgresStorage: a state report and its task's move in one statement (``record_report``).

Written in turn, an ``idle`` report that completes its task was three statements: the report,
the task's compare-and-set, and the agent's record again to free its slot. Here it is one:
both rows are locked if (and only if) they still hold the documents decided on, agent first,
then task, and both are written, or neither.
"""

from __future__ import annotations

from typing import Any

from ...errors import OpsCoreError
from ...models import Agent, StateRecord, TaskRun
from ..parsed import PARSED
from ..report_and_task import ReportPlan, ReportWritten, planned
from ..rules import apply_state
from ..seen import UNSEEN
from .agents import _READ_AGENT, HISTORY_AFTER_CHANGE, AgentRecords
from .base import agent_and_task_written, queued_after
from .completions import NextSteps
from .runs import _READ_TASK

# $1 agent, $2 state, $3 last seen, $4 its document, $5 the report, $6 1, $7 history kept - 1,
# $8 the agent's document decided on; $9 task, $10 its status, $11 its document, $12 the
# task's document decided on (base.agent_and_task_written). Answers (1 if written, the
# agent's document, the task's document).
_SET_STATE_AND_TASK = f"""{agent_and_task_written(8, 9)},{HISTORY_AFTER_CHANGE}
SELECT (SELECT written FROM added) = 1 AND (SELECT count(*) FROM moved) = 1,
    (SELECT doc FROM opscore_agents WHERE agent_id = $1),
    (SELECT doc FROM opscore_tasks WHERE task_id = $9), false
"""
# ... and the run's next step with them (TaskUpdate.then), if the task moved and the step
# still holds the document decided on: $13 the step, $14 its status, $15 its document, $16
# the document decided on; queued at $17 (priority), $18 (ready), NOTIFY $19 from $20.
# The fourth answer says whether it was queued.
_SET_STATE_TASK_AND_NEXT = f"""{agent_and_task_written(8, 9)},{HISTORY_AFTER_CHANGE},
next_moved AS (
    UPDATE opscore_tasks SET status = $14, doc = $15
    WHERE task_id = $13 AND doc = $16 AND EXISTS (SELECT 1 FROM moved) RETURNING task_id),
{queued_after("next_moved", 17, 19, "next_queued")}
SELECT (SELECT written FROM added) = 1 AND (SELECT count(*) FROM moved) = 1,
    (SELECT doc FROM opscore_agents WHERE agent_id = $1),
    (SELECT doc FROM opscore_tasks WHERE task_id = $9),
    (SELECT count(*) FROM next_queued_woken) > 0
"""


class ReportRecords(AgentRecords, NextSteps):
    async def record_report(
        self, record: StateRecord, *, history_limit: int, plan: ReportPlan
    ) -> ReportWritten:
        """One statement when the plan moves a task; ``record_state`` when it moves none.
        Decided first on the documents this process last saw (as ``_Base._cas``); a decision
        to move no task is taken again on the rows when it rested on such a sight and the
        report names a task (another replica may have handed it over since)."""
        agent_key = f"agent:{record.agent_id}"
        named = plan.named_task(record)
        likely = named or self._task_on_sight(agent_key, record, plan)
        turns = (agent_key, f"task:{likely}") if likely else (agent_key,)
        async with self._turns.turn(turns), self._conn() as conn:
            fresh = self._seen.get(agent_key) is UNSEEN
            agent_doc = await self._seen_or_read(conn, agent_key, _READ_AGENT, record.agent_id)
            task_doc: str | None = None
            task_id: str | None = None
            task_fresh = False
            while True:
                try:
                    agent, duplicate = apply_state(_load_agent(agent_doc), record)
                    found = None if duplicate else plan.task_of(agent, record)
                    # refused, or the named task not held: the sight may be from before
                    doubt = found is None and not duplicate and named is not None
                except OpsCoreError:
                    if fresh:
                        raise
                    doubt = True
                if doubt and not fresh:
                    agent_doc = await self._read_afresh(
                        conn, agent_key, _READ_AGENT, record.agent_id
                    )
                    fresh = True
                    continue
                if found is None:
                    break
                if found != task_id:
                    task_id = found
                    task_fresh = self._seen.get(f"task:{found}") is UNSEEN
                    task_doc = await self._seen_or_read(conn, f"task:{found}", _READ_TASK, found)
                task = PARSED.load(TaskRun, task_doc) if task_doc is not None else None
                done = planned(plan, agent, record, task)
                if done is None and named is not None and not task_fresh:
                    task_doc = await self._read_afresh(conn, f"task:{found}", _READ_TASK, found)
                    task_fresh = True
                    continue
                if done is None or agent_doc is None or task_doc is None:
                    break
                update, moved, agent = done
                agent_raw, task_raw = PARSED.dump(agent), PARSED.dump(moved)
                args: tuple[Any, ...] = (
                    agent.agent_id,
                    agent.state,
                    agent.last_seen,
                    agent_raw,
                    PARSED.dump(record),
                    1,
                    max(history_limit - 1, 0),
                    agent_doc,
                    found,
                    moved.status.value,
                    task_raw,
                    task_doc,
                )
                sql, queued = _SET_STATE_AND_TASK, None
                then_args: tuple[Any, ...] = ()
                if update.then is not None:
                    queued, then_args = self._next_step(update.then)
                    if queued is not None:
                        sql = _SET_STATE_TASK_AND_NEXT
                answer = await conn.fetchrow(sql, *args, *then_args)
                written, agent_now, task_now, next_written = answer
                if written:
                    self._seen.put(agent_key, agent_raw)
                    self._seen.put(f"task:{found}", task_raw)
                    queued = self._next_landed(queued, then_args, next_written)
                    return ReportWritten(agent, False, moved, update, queued)
                # one of them changed since: decide again on what the statement saw
                agent_doc, task_doc, fresh, task_fresh = agent_now, task_now, True, True
                self._seen.put(agent_key, agent_doc)
                self._seen.put(f"task:{found}", task_doc)
        agent, duplicate = await self.record_state(record, history_limit=history_limit)
        return ReportWritten(agent, duplicate)

    def _task_on_sight(self, agent_key: str, record: StateRecord, plan: ReportPlan) -> str | None:
        """The task the report is likely about, by this process's last sight of the agent:
        the one whose write of this process the report waits for (``WriteTurns``). Only a
        guess; the statement decides on the rows."""
        doc = self._seen.get(agent_key)
        if doc is UNSEEN or doc is None:
            return None
        try:
            agent, duplicate = apply_state(_load_agent(doc), record)
        except OpsCoreError:
            return None
        return None if duplicate else plan.task_of(agent, record)

    async def _seen_or_read(self, conn: Any, key: str, read: str, ident: str) -> str | None:
        """The document this process last saw under ``key``, else the row's."""
        doc = self._seen.get(key)
        return await self._read_afresh(conn, key, read, ident) if doc is UNSEEN else doc


def _load_agent(doc: str | None) -> Agent | None:
    return PARSED.load(Agent, doc) if doc is not None else None
