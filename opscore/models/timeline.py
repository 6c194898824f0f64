"""One run's timeline: every source Ops-Core has about it, in one time-ordered answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from .common import ApiModel
from .runs import SessionStatus

Source = Literal["run", "task", "attempt", "agent", "log", "span"]


class TimelineEvent(ApiModel):
    at: datetime
    source: Source = Field(
        description=(
            "run: the run started or ended; task: queued or ended; attempt: handed over, "
            "started, ended; agent: a state report of an agent that worked on the run; log: "
            "a log record of the run; span: a span of the run's trace."
        )
    )
    event: str = Field(
        description="e.g. run.started, task.queued, attempt.dispatched, agent.state, a log "
        "message, a span name."
    )
    task_id: str | None = None
    step_id: str | None = None
    agent_id: str | None = None
    attempt: int | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class RunTimeline(ApiModel):
    session_id: str
    workflow_id: str | None = None
    status: SessionStatus
    trace_id: str | None = None
    events: list[TimelineEvent]
    partial: list[str] = Field(
        default_factory=list,
        description=(
            "Sources that may be missing events: 'agent' when an agent's history holds fewer "
            "reports than the run spanned, 'log' and 'span' when the run is older than this "
            "process's buffers (they are per process until they are shared)."
        ),
    )

    model_config = {
        "json_schema_extra": {
            "example": {
                "sessionId": "5f0c6b8e-2a51-4c1e-9d55-0e4f1b2f9b11",
                "workflowId": "research",
                "status": "completed",
                "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                "events": [
                    {"at": "2026-12-04T10:00:00.000Z", "source": "run", "event": "run.started"},
                    {
                        "at": "2026-12-04T10:00:00.002Z",
                        "source": "task",
                        "event": "task.queued",
                        "taskId": "task-1",
                        "stepId": "fetch",
                    },
                    {
                        "at": "2026-12-04T10:00:00.004Z",
                        "source": "attempt",
                        "event": "attempt.dispatched",
                        "taskId": "task-1",
                        "stepId": "fetch",
                        "agentId": "agent-7",
                        "attempt": 1,
                    },
                    {
                        "at": "2026-12-04T10:00:00.050Z",
                        "source": "agent",
                        "event": "agent.state",
                        "agentId": "agent-7",
                        "details": {"state": "active"},
                    },
                    {"at": "2026-12-04T10:00:01.2Z", "source": "run", "event": "run.completed"},
                ],
                "partial": [],
            }
        }
    }
