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
from .runs import Follows, RunRecords


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

        next_id, ends_id = plan.next_step_of(task_id), plan.run_ended_by(task_id)
        # the agent, its history's span, the task, and what follows it if its record is known
        keys = [agent_key, self._history_span_key(record.agent_id), self.k("task", task_id)]
        if next_id is not None:  # the step its completion may queue with it
            keys.append(self.k("task", next_id))
        elif ends_id is not None:  # or the run it may complete
            keys.append(self.k("session", ends_id))
        follows_at = 3 if len(keys) > 3 else None

        def decide(raws: list[str | None]) -> tuple[list[str | None], ReportWritten, Any]:
            news: list[str | None] = [None] * len(keys)
            agent, duplicate = apply_state(_load(Agent, raws[0]), record)
            if duplicate:
                return news, ReportWritten(agent, True), None
            news[1], add_history = self._add_history(raws[1], record, history_limit)
            before = _load(TaskRun, raws[2])
            done = None
            if plan.task_of(agent, record) == task_id:
                done = planned(plan, agent, record, before)
            written, moved, follows = ReportWritten(agent, False), None, Follows()
            read_run = True  # a completion reads its run along, for the run's advance
            if done is not None and before is not None:  # planned() moves no absent task
                update, task, agent = done
                moved = self._task_moved(before, task)
                news[2] = PARSED.dump(task)
                # what follows, if its record is the script's fourth key
                then, end = update.then, update.ends_run
                follows = self._what_follows(
                    then if then is not None and then.task_id == next_id else None,
                    end if end is not None and end.session_id == ends_id else None,
                    raws[follows_at] if follows_at is not None else None,
                )
                if follows_at is not None:
                    news[follows_at] = follows.raw
                written = ReportWritten(agent, False, task, update, follows.queued, follows.ended)
                read_run = follows.queued is None and end is None
            news[0] = PARSED.dump(agent)

            def ops(p: Any) -> None:
                add_history(p)
                if moved is not None:
                    moved(p, read_run=read_run)
                if follows.ops is not None:
                    follows.ops(p)

            return news, written, ops

        return await self._cas_many(keys, decide)

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
