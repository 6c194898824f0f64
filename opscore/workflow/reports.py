"""What agents tell us about their tasks: state reports and explicit results become outcomes."""

from __future__ import annotations

from ..errors import ConflictError, PermissionDeniedError
from ..lifecycle.state import AVAILABLE_STATES, OFFLINE
from ..models import Agent, StateRecord, TaskResultReport, TaskRun, TaskStatus
from ..observe.logs import log_operation
from .outcomes import TaskOutcomes
from .transitions import INFLIGHT_TASK

S = TaskStatus


class AgentReports:
    """Listens to agents' state changes and takes explicit results."""

    def __init__(self, outcomes: TaskOutcomes) -> None:
        self.outcomes = outcomes
        self.engine = outcomes.engine
        self.storage = outcomes.storage

    async def on_agent_state(self, agent: Agent, record: StateRecord) -> None:
        """Turn an agent's state report into outcomes for the tasks it holds."""
        named = record.details.get("opscore_task_id")
        if isinstance(named, str):
            targets = [named] if named in agent.active_tasks else []
            if not targets:
                log_operation(
                    "task.report_ignored",
                    {
                        "agentId": agent.agent_id,
                        "taskId": named,
                        "state": record.state,
                        "reason": "task not in flight on this agent",
                    },
                )
        else:
            targets = list(agent.active_tasks)
        for task_id in targets:
            task = await self.storage.get_task(task_id)
            if task is None or task.status not in INFLIGHT_TASK or task.agent_id != agent.agent_id:
                continue
            await self._apply_state(task, record, named=isinstance(named, str))
        if record.state in AVAILABLE_STATES:
            self.engine.notify_dispatcher()

    async def _apply_state(self, task: TaskRun, record: StateRecord, *, named: bool) -> None:
        state, details = record.state, record.details
        outcomes = self.outcomes
        if state in ("active", "busy"):
            await outcomes.mark_running(task, record.received_at)
        elif state in AVAILABLE_STATES and (named or task.status == S.RUNNING):
            await outcomes.complete_task(task, details.get("result"))
        elif state == "error":
            message = details.get("error") or details.get("message") or "agent reported error"
            await outcomes.fail_attempt(task, str(message)[:2000], outcome="agent_error")
        elif state == OFFLINE:
            await outcomes.requeue_lost(task, "agent went offline")

    async def on_agent_gone(self, agent: Agent) -> None:
        """A deregistered agent's tasks go back to the queue."""
        for task_id in agent.active_tasks:
            task = await self.storage.get_task(task_id)
            if task is not None and task.status in INFLIGHT_TASK:
                await self.outcomes.requeue_lost(task, "agent deregistered")

    async def report_result(
        self, task_id: str, report: TaskResultReport, *, allowed_agents: frozenset[str] | None
    ) -> TaskRun:
        """An explicit result (``POST /tasks/{id}/result``); late or duplicate ones are 409."""
        task = await self.engine.get_task(task_id)
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
            applied = await self.outcomes.complete_task(task, report.result)
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
