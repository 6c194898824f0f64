"""PostgresStorage: a state report and its task's move in one statement (``record_report``).

Written in turn, an ``idle`` report that completes its task was three statements: the report,
the task's compare-and-set, and the agent's record again to free its slot. Here it is one:
both rows are locked if (and only if) they still hold the documents decided on, agent first,
then task, and both are written, or neither; the history's record, the next step queued or
the run ended go with them (``base.AGENT_AND_TASK``: a function, planned once per
connection, where a statement of a dozen CTEs was planned at every call).
"""

from __future__ import annotations

from typing import Any

from ...errors import OpsCoreError
from ...models import Agent, StateRecord, TaskRun
from ..parsed import PARSED
from ..report_and_task import ReportPlan, ReportWritten, planned
from ..rules import apply_state
from ..seen import UNSEEN
from .agents import AgentRecords
from .base import AGENT_AND_TASK, agent_and_task_args
from .completions import NextSteps

# $1 agent, $2 a task, $3 the step its completion may queue, $4 the run it may complete
# (any but the agent may be NULL)
_READ_ROWS = """
SELECT (SELECT doc FROM opscore_agents WHERE agent_id = $1),
    (SELECT doc FROM opscore_tasks WHERE task_id = $2::text),
    (SELECT doc FROM opscore_tasks WHERE task_id = $3::text),
    (SELECT doc FROM opscore_sessions WHERE session_id = $4::text)
"""


class ReportRecords(AgentRecords, NextSteps):
    async def record_report(
        self, record: StateRecord, *, history_limit: int, plan: ReportPlan
    ) -> ReportWritten:
        """One statement when the plan moves a task; ``record_state`` when it moves none.
        Decided first on the documents this process last saw (as ``_Base._cas``); a decision
        to move no task is taken again on the rows when it rested on such a sight and the
        report names a task (another replica may have handed it over since). Rows are read
        together, as on Redis: the agent's with the task's and the step its completion may
        queue, in one statement (read one by one, a replica whose sight another had made
        stale spent three statements more per report, and the run was read back after)."""
        agent_key = f"agent:{record.agent_id}"
        named = plan.named_task(record)
        likely = named or self._task_on_sight(agent_key, record, plan)
        turns = (agent_key, f"task:{likely}") if likely else (agent_key,)
        kept = self._history_offset(record.agent_id, history_limit)
        async with self._turns.turn(turns), self._conn() as conn:
            rows = _Rows(self, conn, record.agent_id, plan)
            if rows.unseen(likely):
                await rows.read(likely)
            while True:
                agent_doc = rows.doc(agent_key)
                try:
                    agent, duplicate = apply_state(_load_agent(agent_doc), record)
                    found = None if duplicate else plan.task_of(agent, record)
                    # refused, or the named task not held: the sight may be from before
                    doubt = found is None and not duplicate and named is not None
                except OpsCoreError:
                    if agent_key in rows.fresh:
                        raise
                    doubt = True
                if doubt and agent_key not in rows.fresh:
                    await rows.read(likely)
                    continue
                if found is None:
                    break
                task_key = f"task:{found}"
                if rows.unseen(found):  # the agent holds another task than the likely one
                    await rows.read(found)
                    continue
                task_doc = rows.doc(task_key)
                task = PARSED.load(TaskRun, task_doc) if task_doc is not None else None
                done = planned(plan, agent, record, task)
                if done is None and named is not None and task_key not in rows.fresh:
                    await rows.read(found)
                    continue
                if done is None or agent_doc is None or task_doc is None:
                    break
                update, moved, agent = done
                agent_raw, task_raw = PARSED.dump(agent), PARSED.dump(moved)
                queued, ended, tail = self._what_follows(update)
                answer = await conn.fetchrow(
                    AGENT_AND_TASK,
                    *agent_and_task_args(
                        (agent.agent_id, agent.state, agent.last_seen, agent_raw, agent_doc),
                        (found, moved.status.value, task_raw, task_doc),
                        report=PARSED.dump(record),
                        kept=kept,
                        next_step=tail if queued is not None else (),
                        run_end=tail if ended is not None else (),
                    ),
                )
                written, agent_now, task_now, tail_written = answer
                if written:
                    self._seen.put(agent_key, agent_raw)
                    self._seen.put(task_key, task_raw)
                    queued, ended = self._followed(queued, ended, tail, tail_written)
                    return ReportWritten(agent, False, moved, update, queued, ended)
                # one of them changed since: decide again on what the statement saw
                rows.saw(agent_key, agent_now)
                rows.saw(task_key, task_now)
        agent, duplicate = await self._record_state(record, kept)
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


class _Rows:
    """The rows one report is decided on: the agent's, a task's and the step that task's
    completion may queue or the run it may complete, as this process last saw them or as
    just read (``fresh``). The step, or the run, is read along so that
    ``NextSteps._what_follows`` finds it."""

    def __init__(self, store: ReportRecords, conn: Any, agent_id: str, plan: ReportPlan) -> None:
        self._store, self._conn, self._agent_id, self._plan = store, conn, agent_id, plan
        self._docs: dict[str, str | None] = {}
        self.fresh: set[str] = set()

    def _keys(self, task_id: str | None) -> list[str]:
        keys = [f"agent:{self._agent_id}"]
        if task_id is not None:
            keys.append(f"task:{task_id}")
            next_id = self._plan.next_step_of(task_id)
            ends_id = self._plan.run_ended_by(task_id) if next_id is None else None
            if next_id is not None:
                keys.append(f"task:{next_id}")
            elif ends_id is not None:
                keys.append(f"session:{ends_id}")
        return keys

    def unseen(self, task_id: str | None) -> bool:
        """Whether any of the rows for ``task_id`` is neither read nor seen by this process."""
        return any(
            key not in self._docs and self._store._seen.get(key) is UNSEEN
            for key in self._keys(task_id)
        )

    def doc(self, key: str) -> str | None:
        if key not in self._docs:
            self._docs[key] = self._store._seen.get(key)
        return self._docs[key]

    async def read(self, task_id: str | None) -> None:
        """The agent's row, the task's and its next step's or its run's, in one statement."""
        keys = self._keys(task_id)
        ids: list[str | None] = [self._agent_id, None, None, None]
        columns = [0]  # per key, its column in the answer
        for key in keys[1:]:
            kind, _, record_id = key.partition(":")
            column = 3 if kind == "session" else 2 if ids[1] is not None else 1
            ids[column] = record_id
            columns.append(column)
        answer = await self._conn.fetchrow(_READ_ROWS, *ids)
        for key, column in zip(keys, columns, strict=True):
            self.saw(key, answer[column])

    def saw(self, key: str, doc: str | None) -> None:
        """``doc`` as the row holds it now."""
        self._docs[key] = doc
        self.fresh.add(key)
        self._store._seen.put(key, doc)


def _load_agent(doc: str | None) -> Agent | None:
    return PARSED.load(Agent, doc) if doc is not None else None
