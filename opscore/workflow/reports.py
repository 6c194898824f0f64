"""What agents tell us about their tasks: state reports and explicit results become outcomes.

Real AgentKit agents send reports that name no task and arrive after the hand-over's answer
(``../shared/contracts/agentkit_example_agent.md``), so an un-named ``idle`` or ``error`` never
ends an attempt whose answer is still awaited: the answer decides. A result for an attempt that
Ops-Core had given up on (the agent was thought lost, or the attempt timed out) still counts
while the task is open.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConflictError, PermissionDeniedError
from ..lifecycle.state import IDLE_STATES, OFFLINE
from ..models import Agent, StateRecord, TaskResultReport, TaskRun, TaskStatus
from ..models.usage import usage_from
from ..observe.logs import log_operation
from ..storage.report_and_task import ReportWritten, TaskUpdate
from .outcomes import GIVEN_UP, TaskOutcomes
from .transitions import INFLIGHT_TASK, TERMINAL_TASK

S = TaskStatus
# how many lost tasks an agent record remembers, for a late report that names none
_LOST_MEMORY = 16


class AgentReports:
    """Listens to agents' state changes and takes explicit results."""

    def __init__(self, outcomes: TaskOutcomes) -> None:
        self.outcomes = outcomes
        self.engine = outcomes.engine
        self.storage = outcomes.storage
        self.dispatchable = frozenset(self.engine.settings.dispatchable_states)

    # --- the change written with the report (ReportPlan, Storage.record_report) -----------
    def task_of(self, agent: Agent, record: StateRecord) -> str | None:
        """The one task an agent's own report is about: the one it names, if the agent holds
        it, else the agent's only task. None otherwise (several tasks, lost tasks, offline,
        Ops-Core's own records): ``on_agent_state`` handles those after the write."""
        named = self.named_task(record)
        if named is not None:
            return named if named in agent.active_tasks else None
        if record.state == OFFLINE or record.reason is not None:
            return None
        return agent.active_tasks[0] if len(agent.active_tasks) == 1 else None

    def named_task(self, record: StateRecord) -> str | None:
        """The task the agent's own report names (``opscore_task_id``), if any."""
        if record.state == OFFLINE or record.reason is not None:
            return None
        named = record.details.get("opscore_task_id")
        return named if isinstance(named, str) else None

    def plan(self, agent: Agent, record: StateRecord, task: TaskRun) -> TaskUpdate | None:
        """What ``_apply_to`` would write for this report, when it is a move to running or
        to completed; None for the rest (a deferred report, an error, a retry), which
        ``on_agent_state`` writes after the report as before."""
        if task.status not in INFLIGHT_TASK or task.agent_id != agent.agent_id:
            return None
        state, details = record.state, record.details
        named = isinstance(details.get("opscore_task_id"), str)
        if state in ("active", "busy"):
            if task.status != S.DISPATCHED:
                return None
            return self.outcomes.running_move(task, record.received_at)
        if not named and task.awaiting_answer:
            return None  # the hand-over's answer decides (_apply_to)
        if state in IDLE_STATES and (named or task.status == S.RUNNING):
            usage = usage_from(details.get("usage"))
            return self.outcomes.completion_move(task, details.get("result"), usage=usage)
        return None

    def next_step_of(self, task_id: str) -> str | None:
        """The step a completion of ``task_id`` queues with it, when one does (next_steps.py)."""
        return self.engine.shapes.next_step_of(task_id)

    def run_ended_by(self, task_id: str) -> str | None:
        """The run a completion of ``task_id`` completes with it, when one does."""
        return self.engine.shapes.ended_by(task_id)

    async def followed(self, agent: Agent, record: StateRecord, written: ReportWritten) -> None:
        """After an applied report: what follows the task's change written with it, or, when
        none was, the report's outcomes for the tasks the agent holds."""
        task, update = written.task, written.update
        if task is None or update is None:
            await self.on_agent_state(agent, record)
            return
        if update.meaning == "running":
            self.outcomes.now_running(task)
        elif update.meaning == "completed":
            usage = usage_from(record.details.get("usage"))
            await self.outcomes.now_completed(
                task, usage, queued=written.queued, ended=written.ended, then=update.planned_then
            )
        if record.state in self.dispatchable:
            self.engine.notify_dispatcher()

    # --- the rest, after the report was written --------------------------------------------
    async def on_agent_state(self, agent: Agent, record: StateRecord) -> None:
        """Turn an agent's state report into outcomes for the tasks it holds."""
        if record.state == OFFLINE:
            why = record.reason or "it reported offline"
            await self._agent_lost(agent, f"agent went offline ({why})")
        elif record.reason is None:  # the agent's own report, not Ops-Core's (a probe's answer)
            await self._apply_report(agent, record)
        if record.state in self.dispatchable:
            self.engine.notify_dispatcher()

    async def _apply_report(self, agent: Agent, record: StateRecord) -> None:
        named = record.details.get("opscore_task_id")
        if isinstance(named, str):
            if named in agent.active_tasks:
                await self._apply_to(named, agent, record, named=True)
            elif named in agent.lost_tasks:
                await self._apply_late(agent, [named], record)
            else:
                log_operation(
                    "task.report_ignored",
                    {
                        "agentId": agent.agent_id,
                        "taskId": named,
                        "state": record.state,
                        "reason": "task not in flight on this agent",
                    },
                )
            return
        for task_id in agent.active_tasks:
            await self._apply_to(task_id, agent, record, named=False)
        if not agent.active_tasks and agent.lost_tasks:
            await self._apply_late(agent, list(agent.lost_tasks), record)

    async def _apply_to(
        self, task_id: str, agent: Agent, record: StateRecord, *, named: bool
    ) -> None:
        task = await self.storage.get_task(task_id)
        if task is None or task.status not in INFLIGHT_TASK or task.agent_id != agent.agent_id:
            return
        state, details = record.state, record.details
        outcomes = self.outcomes
        if state in ("active", "busy"):
            await outcomes.mark_running(task, record.received_at)
        elif not named and task.awaiting_answer:
            # the hand-over's answer is on its way and decides (AgentKit's order); kept in case
            # the answer turns out to be a mere acknowledgement (then this report decides)
            if state in IDLE_STATES or state == "error":
                deferred = {
                    "state": state,
                    "result": details.get("result"),
                    "usage": details.get("usage"),
                }
                if state == "error":
                    deferred["error"] = _error_text(details)
                await self.storage.update_task(
                    task.task_id,
                    {"deferred_report": deferred},
                    expect=[s.value for s in INFLIGHT_TASK],
                    attempt=task.attempts,
                )
        elif state in IDLE_STATES and (named or task.status == S.RUNNING):
            usage = usage_from(details.get("usage"))
            await outcomes.complete_task(task, details.get("result"), usage=usage)
        elif state == "error":
            await outcomes.fail_attempt(task, _error_text(details), outcome="agent_error")

    async def _apply_late(self, agent: Agent, task_ids: list[str], record: StateRecord) -> None:
        """A report from an agent that came back after its tasks were re-queued."""
        if record.state in IDLE_STATES:
            for task_id in task_ids:
                task = await self.storage.get_task(task_id)
                if task is not None and _gave_up_on(task, agent.agent_id):
                    await self.outcomes.complete_late(
                        task, agent.agent_id, record.details.get("result"), via="report"
                    )
        if record.state in IDLE_STATES or record.state == "error":
            remaining = [t for t in agent.lost_tasks if t not in task_ids]
            await self.storage.update_agent(agent.agent_id, {"lost_tasks": remaining})

    async def _agent_lost(self, agent: Agent, reason: str) -> None:
        if agent.active_tasks:
            lost = [*agent.lost_tasks, *agent.active_tasks][-_LOST_MEMORY:]
            await self.storage.update_agent(agent.agent_id, {"lost_tasks": lost})
        for task_id in agent.active_tasks:
            task = await self.storage.get_task(task_id)
            if (
                task is not None
                and task.status in INFLIGHT_TASK
                and task.agent_id == agent.agent_id
            ):
                await self.outcomes.requeue_lost(task, reason)

    async def on_agent_gone(self, agent: Agent) -> None:
        """A deregistered agent's tasks go back to the queue."""
        for task_id in agent.active_tasks:
            task = await self.storage.get_task(task_id)
            if task is not None and task.status in INFLIGHT_TASK:
                await self.outcomes.requeue_lost(task, "agent deregistered")

    async def report_result(
        self, task_id: str, report: TaskResultReport, *, allowed_agents: frozenset[str] | None
    ) -> TaskRun:
        """An explicit result (``POST /tasks/{id}/result``); late or duplicate ones are 409,
        except a completed result for an attempt Ops-Core gave up on while the task is open."""
        task = await self.engine.get_task(task_id)
        current_reporter = task.status in INFLIGHT_TASK and report.agent_id in (None, task.agent_id)
        if not current_reporter and await self._accept_late_result(task, report, allowed_agents):
            return await self.engine.get_task(task_id)
        if allowed_agents is not None and task.agent_id not in allowed_agents:
            raise PermissionDeniedError(
                f"This key may not report for task '{task_id}'", code="AGENT_NOT_ALLOWED"
            )
        if report.agent_id is not None and report.agent_id != task.agent_id:
            raise ConflictError(
                f"Task '{task_id}' is assigned to agent '{task.agent_id}', not '{report.agent_id}'",
                code="TASK_NOT_ASSIGNED",
            )
        if task.status not in INFLIGHT_TASK:
            raise ConflictError(
                f"Task '{task_id}' is {task.status.value}; it takes no result now",
                code="TASK_NOT_IN_FLIGHT",
            )
        if report.status == "completed":
            applied = await self.outcomes.complete_task(
                task, report.result, usage=usage_from(report.usage)
            )
        else:
            applied = await self.outcomes.fail_attempt(
                task, report.error or "agent reported failure", outcome="failed"
            )
        if not applied:
            raise ConflictError(
                f"Task '{task_id}' changed while the result was applied; it was not used",
                code="TASK_NOT_IN_FLIGHT",
            )
        return await self.engine.get_task(task_id)

    async def _accept_late_result(
        self, task: TaskRun, report: TaskResultReport, allowed_agents: frozenset[str] | None
    ) -> bool:
        if report.status != "completed" or task.status in TERMINAL_TASK:
            return False
        reporters = _given_up_agents(task)
        if report.agent_id is not None:
            reporters &= {report.agent_id}
        if allowed_agents is not None:
            reporters &= allowed_agents
        if not reporters:
            return False
        reporter = report.agent_id or sorted(reporters)[0]
        return await self.outcomes.complete_late(task, reporter, report.result, via="result")


def _given_up_agents(task: TaskRun) -> set[str]:
    """Agents whose attempt of this task Ops-Core gave up on without hearing from them."""
    return {a.agent_id for a in task.history if a.outcome in GIVEN_UP and a.agent_id}


def _gave_up_on(task: TaskRun, agent_id: str) -> bool:
    return task.status not in TERMINAL_TASK and agent_id in _given_up_agents(task)


def _error_text(details: dict[str, Any]) -> str:
    message = details.get("error") or details.get("message") or "agent reported error"
    if isinstance(message, dict):  # AgentKit's {"error_code": ..., "message": ...}
        message = message.get("message") or message.get("error_code") or message
    return str(message)[:2000]
