"""Starting steps that no agent runs: a skipped step, and a step that waits for a decision.

The engine calls these when a step's prerequisites are done; ``decisions.py`` ends the waits.
Both are compare-and-set moves from the statuses the caller names, like every other move.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..models import TaskRun, TaskStatus
from ..observe.logs import log_operation
from .transitions import move_task

if TYPE_CHECKING:
    from .engine import WorkflowEngine

S = TaskStatus
# told when a step starts waiting (events out: "approval needed")
WaitListener = Callable[[TaskRun], Awaitable[None]]


async def skip_step(engine: WorkflowEngine, task: TaskRun, reason: str) -> TaskRun | None:
    """End a pending step as skipped (its condition was false, or a prerequisite skipped)."""
    skipped = await move_task(
        engine.storage,
        task.task_id,
        S.SKIPPED,
        only_from=frozenset({S.PENDING}),
        skip_reason=reason,
        finished_at=engine.clock(),
    )
    if skipped is not None:
        engine.observe("skipped", skipped)
        log_operation(
            "task.skipped",
            {"sessionId": task.session_id, "taskId": task.task_id, "reason": reason},
        )
    return skipped


async def start_wait(
    engine: WorkflowEngine,
    task: TaskRun,
    resolved: dict[str, Any],
    from_status: frozenset[TaskStatus],
    **changes: Any,
) -> TaskRun | None:
    """An approval or signal step starts waiting, until its deadline if it has one."""
    now = engine.clock()
    timeout = task.wait.timeout_seconds if task.wait else None
    waiting = await move_task(
        engine.storage,
        task.task_id,
        S.WAITING,
        only_from=from_status,
        started_at=now,
        deadline=now + timedelta(seconds=timeout) if timeout else None,
        resolved_parameters=resolved,
        decision=None,
        **changes,
    )
    if waiting is None:
        return None
    engine.observe("waiting", waiting)
    log_operation(
        "task.waiting",
        {
            "sessionId": task.session_id,
            "taskId": task.task_id,
            "kind": task.kind,
            "signal": task.wait.signal if task.wait else None,
        },
    )
    for listener in engine.wait_listeners:
        await listener(waiting)
    return waiting
