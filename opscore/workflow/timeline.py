"""One run's timeline, joined from every source: the run and its tasks (store), each attempt
(task history), the state reports of the agents that worked on it (their history, within the
run's window), the run's log records and the spans of its trace (this process's buffers).

Nothing here is new data: it is the answer an operator otherwise pieces together from five
calls, in one time-ordered list the console can draw as it comes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..models import (
    RunTimeline,
    Session,
    StateRecord,
    TaskRun,
    TaskStatus,
    TimelineEvent,
    as_utc,
)
from ..observe.logs import LogBuffer, filter_records
from ..observe.tracing import Tracer
from ..storage.base import Storage
from .engine import WorkflowEngine

# bounds per source, so one run's timeline costs in proportion to the run, not the fleet
AGENT_REPORTS = 500  # newest reports read per agent
LOG_RECORDS = 2000
_ORDER = {"run": 0, "task": 1, "attempt": 2, "agent": 3, "log": 4, "span": 5}
_LOG_FIELDS = ("timestamp", "message", "sessionId", "taskId", "agentId", "id")


class RunTimelines:
    def __init__(
        self,
        engine: WorkflowEngine,
        *,
        logs: LogBuffer | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.engine = engine
        self.storage: Storage = engine.storage
        self.logs = logs
        self.tracer = tracer

    async def timeline(self, session_id: str) -> RunTimeline:
        """The run's events, oldest first; NotFoundError for an unknown run."""
        session = await self.engine.get_session(session_id)
        tasks = await self.storage.session_tasks(session_id)
        events = _run_events(session) + [e for t in tasks for e in _task_events(t)]
        partial: list[str] = []
        start = session.created_at
        end = session.finished_at or self.engine.clock()
        agents = sorted({a.agent_id for t in tasks for a in t.history if a.agent_id})
        for agent_id in agents:
            reports, complete = await self._reports(agent_id, start, end)
            events += [_report_event(r) for r in reports]
            if not complete and "agent" not in partial:
                partial.append("agent")
        if self.logs is not None:
            buffered = self.logs.snapshot()
            records = list(filter_records(buffered, session_id=session_id))
            events += [_log_event(r) for r in records[-LOG_RECORDS:]]
            if not buffered or buffered[0]["timestamp"] > as_utc(start).isoformat():
                partial.append("log")  # the buffer starts after the run did
        if self.tracer is not None and session.trace_id:
            spans = self.tracer.trace(session.trace_id)
            events += [_span_event(s) for s in spans]
            if not spans:
                partial.append("span")
        events.sort(key=lambda e: (e.at, _ORDER[e.source]))
        return RunTimeline(
            session_id=session.session_id,
            workflow_id=session.workflow_id,
            status=session.status,
            trace_id=session.trace_id,
            events=events,
            partial=partial,
        )

    async def _reports(
        self, agent_id: str, start: datetime, end: datetime
    ) -> tuple[list[StateRecord], bool]:
        """The agent's reports received within [start, end], and whether its history reaches
        back to the start (else older ones were trimmed, or not read)."""
        page = await self.storage.state_history(agent_id, offset=0, limit=AGENT_REPORTS)
        within = [r for r in page.items if start <= as_utc(r.received_at) <= end]
        reaches_back = bool(page.items) and as_utc(page.items[-1].received_at) < start
        return sorted(within, key=lambda r: r.received_at), reaches_back or (
            page.total <= len(page.items)
        )


def _event(at: datetime, source: Any, event: str, **fields: Any) -> TimelineEvent:
    return TimelineEvent(at=as_utc(at), source=source, event=event, **fields)


def _run_events(session: Session) -> list[TimelineEvent]:
    events = [_event(session.created_at, "run", "run.started")]
    if session.finished_at is not None:
        details = {"error": session.error} if session.error else {}
        events.append(
            _event(session.finished_at, "run", f"run.{session.status.value}", details=details)
        )
    return events


def _task_events(task: TaskRun) -> list[TimelineEvent]:
    ids = {"task_id": task.task_id, "step_id": task.step_id}
    events = []
    if task.queued_at is not None:
        events.append(_event(task.queued_at, "task", "task.queued", **ids))
    for attempt in task.history:
        each = {**ids, "agent_id": attempt.agent_id, "attempt": attempt.attempt}
        if attempt.dispatched_at is not None:
            events.append(_event(attempt.dispatched_at, "attempt", "attempt.dispatched", **each))
        if attempt.started_at is not None:
            events.append(_event(attempt.started_at, "attempt", "attempt.started", **each))
        if attempt.finished_at is not None:
            details = {"outcome": attempt.outcome}
            if attempt.error:
                details["error"] = attempt.error
            events.append(
                _event(attempt.finished_at, "attempt", "attempt.ended", details=details, **each)
            )
    if task.finished_at is not None and task.status in (
        TaskStatus.COMPLETED,
        TaskStatus.FAILED,
        TaskStatus.CANCELLED,
    ):
        details = {"result": task.result} if task.status == TaskStatus.COMPLETED else {}
        if task.error:
            details["error"] = task.error
        events.append(
            _event(task.finished_at, "task", f"task.{task.status.value}", details=details, **ids)
        )
    return events


def _report_event(record: StateRecord) -> TimelineEvent:
    details: dict[str, Any] = {"state": record.state}
    if record.details:
        details["details"] = record.details
    if record.reason:
        details["reason"] = record.reason
    return _event(
        record.received_at, "agent", "agent.state", agent_id=record.agent_id, details=details
    )


def _log_event(record: dict[str, Any]) -> TimelineEvent:
    details = {k: v for k, v in record.items() if k not in _LOG_FIELDS and v is not None}
    return _event(
        datetime.fromisoformat(record["timestamp"]),
        "log",
        str(record["message"]),
        task_id=record.get("taskId"),
        agent_id=record.get("agentId"),
        details={"logId": record["id"], **details},
    )


def _span_event(span: dict[str, Any]) -> TimelineEvent:
    details = {
        k: span[k] for k in ("spanId", "parentId", "end", "durationMs", "status") if span.get(k)
    }
    attributes = span.get("attributes") or {}
    return _event(
        datetime.fromisoformat(span["start"]),
        "span",
        str(span["name"]),
        task_id=attributes.get("taskId"),
        agent_id=attributes.get("agentId"),
        details={**details, "attributes": attributes},
    )
