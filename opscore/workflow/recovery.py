"""Recovery after a restart on a durable store: finish what a crash interrupted."""

from __future__ import annotations

from ..models import SessionStatus, TaskStatus
from ..observe.logs import log_operation
from .engine import WorkflowEngine
from .transitions import INFLIGHT_TASK

_PAGE = 500


async def recover(engine: WorkflowEngine) -> int:
    """Give queued tasks their queue entry back, advance running runs, free leaked agent slots.

    Idempotent. Returns the number of running sessions it looked at.
    """
    storage = engine.storage
    session_ids: list[str] = []
    while True:
        page = await storage.list_sessions(
            status=SessionStatus.RUNNING.value,
            workflow_id=None,
            agent_id=None,
            offset=len(session_ids),
            limit=_PAGE,
        )
        session_ids += [s.session_id for s in page.items]
        if not page.items or len(session_ids) >= page.total:
            break
    for session_id in session_ids:
        for task in await storage.session_tasks(session_id):
            if task.status == TaskStatus.QUEUED:
                await storage.enqueue(
                    task.task_id, priority=task.priority, ready_at=task.ready_at or engine.clock()
                )
        await engine.advance(session_id)
    await reconcile_slots(engine)
    if session_ids:
        log_operation("workflow.recovered", {"sessions": len(session_ids)})
    engine.notify_dispatcher()
    return len(session_ids)


async def reconcile_slots(engine: WorkflowEngine) -> None:
    """Drop agents' active-task entries whose task is no longer in flight on them."""
    storage = engine.storage
    offset = 0
    while True:
        page = await storage.list_agents(state=None, capability=None, offset=offset, limit=_PAGE)
        for agent in page.items:
            for task_id in agent.active_tasks:
                task = await storage.get_task(task_id)
                if (
                    task is None
                    or task.status not in INFLIGHT_TASK
                    or task.agent_id != agent.agent_id
                ):
                    await storage.release_agent_slot(agent.agent_id, task_id)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return
