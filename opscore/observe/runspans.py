"""The spans of a workflow run, whole even when several replicas handle it.

A run's spans start and end at different moments, often in different processes: the replica
that took the trigger opens ``invoke_workflow``, another one may hand a task over, a third take
the report that ends it. So each span's id is derived from ids in the store (the session, the
task, the attempt number) and each task carries its run's trace id: whichever replica opens a
span, opens a child of it, or ends it, names the same span. A span ended by a replica that did
not open it is recorded there from the times in the task record (its start is then the stored
time, not a local clock); the replica that opened it drops it from its open spans in time.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Any

from opentelemetry.trace import SpanKind

from ..models import Agent, Session, TaskRun
from . import genai
from .tracing import Span, Tracer, new_trace_id


def derived_id(*parts: str) -> str:
    """A span id (16 hex digits, never all zero) that every replica derives the same way."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest()
    return digest if digest != "0" * 16 else "0" * 15 + "1"


def _ts(moment: datetime | None) -> float:
    return moment.timestamp() if moment is not None else time.time()


class RunSpans:
    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    # --- the run ---------------------------------------------------------------------------
    def run_started(
        self, session_id: str, trace_id: str, parent_id: str | None, workflow_id: str
    ) -> None:
        self.tracer.start_trace(
            f"run:{session_id}",
            f"invoke_workflow {workflow_id}",
            trace_id=trace_id,
            parent_id=parent_id,
            span_id=derived_id("run", session_id),
            sessionId=session_id,
            workflowId=workflow_id,
            **genai.invoke_workflow(workflow_id, session_id),
        )

    def run_ended(self, session: Session, status: str) -> None:
        state = "ok" if status == "completed" else "error"
        if self.tracer.end_trace(f"run:{session.session_id}", status=state, outcome=status):
            return
        if session.trace_id is None:
            return
        workflow = session.workflow_id or ""
        self.tracer.record(  # opened by another replica: recorded here, from the record
            Span(
                name=f"invoke_workflow {workflow}",
                trace_id=session.trace_id,
                span_id=derived_id("run", session.session_id),
                start=_ts(session.created_at),
                attributes={
                    "sessionId": session.session_id,
                    "workflowId": workflow,
                    "outcome": status,
                    **genai.invoke_workflow(workflow, session.session_id),
                },
            ),
            status=state,
        )

    # --- tasks -----------------------------------------------------------------------------
    def _trace(self, task: TaskRun) -> str | None:
        if task.trace_id:
            return task.trace_id
        run = self.tracer.get_open(f"run:{task.session_id}")
        return run.trace_id if run else None

    def queued(self, task: TaskRun) -> None:
        trace_id = self._trace(task)
        if trace_id is None:
            return
        if task.attempts == 0 and self.tracer.get_open(f"task:{task.task_id}") is None:
            # the task's own span opens where it is first queued; whoever ends it names it
            self.tracer.start_trace(
                f"task:{task.task_id}",
                "task",
                trace_id=trace_id,
                parent_id=derived_id("run", task.session_id),
                span_id=derived_id("task", task.task_id),
                taskId=task.task_id,
                sessionId=task.session_id,
                step=task.step_id,
            )
        self.tracer.start_trace(
            f"queued:{task.task_id}",
            "task.queued",
            trace_id=trace_id,
            parent_id=derived_id("task", task.task_id),
            span_id=derived_id("queued", task.task_id, str(task.attempts)),
            taskId=task.task_id,
        )

    def dispatched(self, task: TaskRun) -> None:
        """The wait in the queue ends, the attempt begins."""
        trace_id = self._trace(task)
        if trace_id is None:
            return
        self._end(
            f"queued:{task.task_id}",
            "task.queued",
            task,
            span_id=derived_id("queued", task.task_id, str(task.attempts - 1)),
            parent_id=derived_id("task", task.task_id),
            start=task.ready_at or task.queued_at,
        )
        self.tracer.start_trace(
            f"run:{task.task_id}",
            "task.run",
            trace_id=trace_id,
            parent_id=derived_id("task", task.task_id),
            span_id=derived_id("attempt", task.task_id, str(task.attempts)),
            start=_ts(task.dispatched_at),
            taskId=task.task_id,
            agentId=task.agent_id,
            attempt=task.attempts,
        )

    def hand_over(self, task: TaskRun, agent: Agent, endpoint: str | None) -> Span:
        """The hand-over: the GenAI conventions' ``invoke_agent`` CLIENT span, a child of the
        attempt. Its id goes to the agent in ``traceparent``."""
        return Span(
            name=f"invoke_agent {agent.agent_name or agent.agent_id}",
            trace_id=self._trace(task) or new_trace_id(),
            parent_id=derived_id("attempt", task.task_id, str(task.attempts)),
            kind=SpanKind.CLIENT,
            attributes={
                **genai.invoke_agent(agent, task.session_id, endpoint),
                "taskId": task.task_id,
                "agentId": task.agent_id,
                "attempt": task.attempts,
            },
        )

    def attempt_ended(self, task: TaskRun, status: str, **attributes: Any) -> None:
        self._end(
            f"run:{task.task_id}",
            "task.run",
            task,
            span_id=derived_id("attempt", task.task_id, str(task.attempts)),
            parent_id=derived_id("task", task.task_id),
            start=task.dispatched_at,
            status=status,
            taskId=task.task_id,
            agentId=task.agent_id,
            attempt=task.attempts,
            **attributes,
        )

    def cancelled(self, task: TaskRun) -> None:
        """Only spans open here end: a cancelled task's earlier attempts were recorded when
        they ended, and recording them again would repeat their ids."""
        self.tracer.end_trace(f"queued:{task.task_id}", status="cancelled")
        self.tracer.end_trace(f"run:{task.task_id}", status="cancelled")
        self.task_ended(task, "cancelled")

    def task_ended(self, task: TaskRun, status: str, **attributes: Any) -> None:
        self._end(
            f"task:{task.task_id}",
            "task",
            task,
            span_id=derived_id("task", task.task_id),
            parent_id=derived_id("run", task.session_id),
            start=task.created_at,
            status=status,
            taskId=task.task_id,
            sessionId=task.session_id,
            step=task.step_id,
            **attributes,
        )

    def _end(
        self,
        key: str,
        name: str,
        task: TaskRun,
        *,
        span_id: str,
        parent_id: str,
        start: datetime | None,
        status: str = "ok",
        **attributes: Any,
    ) -> bool:
        """End the span open here under ``key``; else, when it was opened elsewhere, record
        it from the task record. True when it was open here."""
        if self.tracer.end_trace(key, status=status, **attributes) is not None:
            return True
        trace_id = self._trace(task)
        if trace_id is not None and start is not None:
            self.tracer.record(
                Span(
                    name=name,
                    trace_id=trace_id,
                    span_id=span_id,
                    parent_id=parent_id,
                    start=_ts(start),
                    attributes=attributes,
                ),
                status=status,
            )
        return False
