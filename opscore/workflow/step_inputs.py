"""What a step starts with: the context its ``${...}`` references resolve against, and what
its move to queued writes. The engine queues steps with them (``enqueue_task``), and so does
a run's first write for its first steps (first_steps.py) and a completion for the step after
it (next_steps.py), so the three cannot drift apart."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..models import NextStep, Session, TaskRun, TaskStatus

S = TaskStatus


def queued_fields(task: TaskRun | NextStep, resolved: Any, now: datetime) -> dict[str, Any]:
    """What a move to queued writes besides the status: when, when the task is ready (after
    its delay), and its resolved parameters."""
    return {
        "queued_at": now,
        "ready_at": now + timedelta(seconds=task.delay_seconds),
        "resolved_parameters": resolved,
    }


def substitution_context(session: Session, tasks: list[TaskRun]) -> dict[str, Any]:
    """What ``${...}`` references resolve against: input, tasks' results, the session."""
    results: dict[str, Any] = {}
    for t in tasks:
        results.setdefault(t.step_id, {"status": t.status.value, "result": t.result})
    for t in tasks:  # a completed fallback stands in for the step it replaced
        if t.fallback_for and t.status == S.COMPLETED:
            results[t.fallback_for] = {"status": "completed", "result": t.result}
    return {
        "input": session.initial_payload,
        "tasks": results,
        "session": {"id": session.session_id, "agentId": session.agent_id},
    }
