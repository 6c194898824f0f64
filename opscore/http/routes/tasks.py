"""Task runs, explicit results, and the dead-letter list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path

from ...models import ID_PATTERN, DeadLetter, Page, TaskResultReport, TaskRun
from ..deps import CallerDep, PagingDep, ServicesDep, require
from . import CONFLICT, ERRORS, GONE, NOT_FOUND

router = APIRouter(prefix="/v1/opscore", tags=["tasks"], responses=ERRORS)
TaskId = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        description="The task run's id (opscore_task_id).",
        examples=["task-6f1c2a9e0b7d4c3e8a5f1b2c3d4e5f60"],
    ),
]


@router.get(
    "/tasks/{taskId}",
    summary="Get a task run",
    response_model=TaskRun,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def get_task(taskId: TaskId, services: ServicesDep) -> TaskRun:
    return await services.workflow.runs.get_task(taskId)


@router.post(
    "/tasks/{taskId}/result",
    summary="Report a task's result explicitly",
    response_model=TaskRun,
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("tasks:result")],
)
async def report_result(
    taskId: TaskId,
    body: Annotated[
        TaskResultReport, Body(examples=[{"status": "completed", "result": {"words": 200}}])
    ],
    services: ServicesDep,
    caller: CallerDep,
) -> TaskRun:
    """For agents that know their opscore_task_id. A result for a task that is not in flight
    (late, duplicate, cancelled) is 409 and changes nothing."""
    allowed = caller.agents if caller.role == "agent" else None
    return await services.workflow.reports.report_result(taskId, body, allowed_agents=allowed)


@router.get(
    "/dead-letters",
    summary="Tasks that exhausted their retries",
    response_model=Page[DeadLetter],
    dependencies=[require("read")],
)
async def list_dead_letters(services: ServicesDep, paging: PagingDep) -> Page[DeadLetter]:
    return await services.workflow.dead_letters.list_dead_letters(
        offset=paging.offset, limit=paging.limit
    )


@router.post(
    "/dead-letters/{taskId}/redrive",
    summary="Re-drive a dead-lettered task",
    response_model=TaskRun,
    responses={**NOT_FOUND, **CONFLICT, **GONE},
    dependencies=[require("runs:write")],
)
async def redrive(taskId: TaskId, services: ServicesDep) -> TaskRun:
    """Gives the task a fresh set of attempts and reopens its failed run. A task whose run
    was cancelled or has completed is 409 (`SESSION_CLOSED`) and stays dead-lettered; one
    whose run retention has removed is 410 (`SESSION_PRUNED`)."""
    return await services.workflow.dead_letters.redrive(taskId)
