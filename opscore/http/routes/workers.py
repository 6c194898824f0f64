"""Pull workers: claim tasks by long-poll, keep them by heartbeat, report or hand them back."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path

from ...models import (
    ID_PATTERN,
    LeaseRenewed,
    TaskRun,
    WorkerClaim,
    WorkerClaimed,
    WorkerResult,
)
from ..deps import CallerDep, ServicesDep, require
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/workers", tags=["workers"], responses=ERRORS)
AgentId = Annotated[
    str, Path(pattern=ID_PATTERN, description="The worker's agent id.", examples=["worker-1"])
]
TaskId = Annotated[str, Path(pattern=ID_PATTERN, description="A task the worker claimed.")]
HELD = {**NOT_FOUND, **CONFLICT}


@router.post(
    "/{agentId}/claim",
    summary="Claim work (long-poll)",
    response_model=WorkerClaimed,
    responses=HELD,
    dependencies=[require("tasks:result")],
)
async def claim(
    agentId: AgentId,
    services: ServicesDep,
    caller: CallerDep,
    body: Annotated[
        WorkerClaim, Body(examples=[{"waitSeconds": 20, "maxTasks": 1}])
    ] = WorkerClaim(),
) -> WorkerClaimed:
    """Answers with the tasks dispatched to this worker as soon as there are some, or with
    none after `waitSeconds`. Each comes with the same `workflow_task` message a push agent
    gets, and a lease: heartbeat before `leaseUntil`, or the task goes to another worker. The
    agent must be registered with `delivery: pull`; polling also counts as its heartbeat."""
    caller.require_agent(agentId)
    tasks = await services.workflow.workers.claim(
        agentId, wait=body.wait_seconds, most=body.max_tasks
    )
    return WorkerClaimed(tasks=tasks)


@router.post(
    "/{agentId}/tasks/{taskId}/heartbeat",
    summary="Keep a claimed task's lease",
    response_model=LeaseRenewed,
    responses=HELD,
    dependencies=[require("tasks:result")],
)
async def heartbeat(
    agentId: AgentId, taskId: TaskId, services: ServicesDep, caller: CallerDep
) -> LeaseRenewed:
    """409 `LEASE_LOST` when the task is no longer this worker's: `details.cancelled` says the
    run was cancelled (stop working; this call acknowledges it), otherwise the lease ran out
    and the task went elsewhere."""
    caller.require_agent(agentId)
    return await services.workflow.workers.heartbeat(agentId, taskId)


@router.post(
    "/{agentId}/tasks/{taskId}/complete",
    summary="Complete a claimed task",
    response_model=TaskRun,
    responses=HELD,
    dependencies=[require("tasks:result")],
)
async def complete(
    agentId: AgentId,
    taskId: TaskId,
    services: ServicesDep,
    caller: CallerDep,
    body: Annotated[
        WorkerResult,
        Body(
            examples=[
                {"result": {"words": 200}, "usage": {"inputTokens": 900, "outputTokens": 210}}
            ]
        ),
    ] = WorkerResult(),
) -> TaskRun:
    caller.require_agent(agentId)
    return await services.workflow.workers.complete(agentId, taskId, body.result, body.usage)


@router.post(
    "/{agentId}/tasks/{taskId}/fail",
    summary="Fail a claimed task's attempt",
    response_model=TaskRun,
    responses=HELD,
    dependencies=[require("tasks:result")],
)
async def fail(
    agentId: AgentId,
    taskId: TaskId,
    services: ServicesDep,
    caller: CallerDep,
    body: Annotated[
        WorkerResult, Body(examples=[{"error": "source unreachable"}])
    ] = WorkerResult(),
) -> TaskRun:
    """The attempt fails: it is retried with backoff while attempts remain, as for any agent."""
    caller.require_agent(agentId)
    return await services.workflow.workers.fail(agentId, taskId, body.error)


@router.post(
    "/{agentId}/tasks/{taskId}/release",
    summary="Hand a claimed task back",
    response_model=TaskRun,
    responses=HELD,
    dependencies=[require("tasks:result")],
)
async def release(
    agentId: AgentId, taskId: TaskId, services: ServicesDep, caller: CallerDep
) -> TaskRun:
    """For a worker shutting down: the task is queued again at once, not charged as an
    attempt."""
    caller.require_agent(agentId)
    return await services.workflow.workers.release(agentId, taskId)
