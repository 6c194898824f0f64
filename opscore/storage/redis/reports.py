"""RedisStorage: a state report and its task's move in one compare-and-set of both records
(``Storage.record_report``)."""

from __future__ import annotations

from typing import Any

from ...errors import OpsCoreError
from ...models import Agent, StateRecord, TaskRun
from ..parsed import PARSED
from ..report_and_task import ReportPlan, ReportWritten, planned
from ..rules import apply_state
from ..seen import UNSEEN
from .agents import AgentRecords
from .base import _load
from .runs import RunRecords


class ReportRecords(AgentRecords, RunRecords):
    async def record_report(
        self, record: StateRecord, *, history_limit: int, plan: ReportPlan
    ) -> ReportWritten:
        """The report and its task's change in one compare-and-set of both records. Which
        task that is comes from this process's last sight of the agent; when the agent turns
        out to hold another one, only the report is written, and the caller goes on as
        after ``record_state``."""
        agent_key = self.k("agent", record.agent_id)
        task_id = self._task_of_guess(agent_key, record, plan)
        if task_id is None:
            agent, duplicate = await self.record_state(record, history_limit=history_limit)
            return ReportWritten(agent, duplicate)

        def decide(raws: list[str | None]) -> tuple[list[str | None], ReportWritten, Any]:
            agent, duplicate = apply_state(_load(Agent, raws[0]), record)
            if duplicate:
                return [None, None], ReportWritten(agent, True), None
            before = _load(TaskRun, raws[1])
            done = None
            if plan.task_of(agent, record) == task_id:
                done = planned(plan, agent, record, before)
            moved = self._task_moved(before, done[1]) if before and done else None

            def ops(p: Any) -> None:
                self._add_history(p, record, history_limit)
                if moved is not None:
                    moved(p)

            if done is None:
                return [PARSED.dump(agent), None], ReportWritten(agent, False), ops
            update, task, agent = done
            written = ReportWritten(agent, False, task, update)
            return [PARSED.dump(agent), PARSED.dump(task)], written, ops

        return await self._cas_many([agent_key, self.k("task", task_id)], decide)

    def _task_of_guess(self, agent_key: str, record: StateRecord, plan: ReportPlan) -> str | None:
        """The task the report is about, by the agent as this process last saw it. When that
        sight (or none) says the agent does not hold the task the report names, the sight
        is forgotten and the task is still tried: another replica may have handed it over
        since, and the compare-and-set then reads both records afresh, in one round trip,
        rather than write the report alone and move the task in three more."""
        named = plan.named_task(record)
        raw = self._seen.get(agent_key)
        if raw is UNSEEN or raw is None:
            return named
        try:
            agent, duplicate = apply_state(PARSED.load(Agent, raw), record)
        except OpsCoreError:
            return named  # judged again on the store's record, in the compare-and-set
        if duplicate:
            return None
        found = plan.task_of(agent, record)
        if found is None and named is not None:
            self._seen.forget(agent_key)
            return named
        return found
