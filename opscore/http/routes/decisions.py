"""Steps waiting for a decision: list them, approve or reject one, send a run a signal."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Query

from ...models import ID_PATTERN, DecisionRequest, Page, SignalRequest, TaskRun, WaitingStep
from ..deps import CallerDep, PagingDep, ServicesDep, require
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore", tags=["approvals and signals"], responses=ERRORS)
TaskId = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        description="The waiting step's task run id.",
        examples=["task-6f1c2a9e0b7d4c3e8a5f1b2c3d4e5f60"],
    ),
]
DECISION_EXAMPLES = [{"comment": "Checked the sources; publish", "payload": {"channel": "#news"}}]


@router.get(
    "/waiting",
    summary="Steps waiting for a decision",
    response_model=Page[WaitingStep],
    dependencies=[require("read")],
)
async def list_waiting(
    services: ServicesDep,
    paging: PagingDep,
    kind: Annotated[Literal["approval", "signal"] | None, Query()] = None,
    session_id: Annotated[str | None, Query(alias="sessionId", pattern=ID_PATTERN)] = None,
) -> Page[WaitingStep]:
    """Approval and signal steps that wait now, the longest-waiting first, with what each
    waits for, its prompt, its parameters and its deadline."""
    return await services.workflow.decisions.list_waiting(
        kind=kind, session_id=session_id, offset=paging.offset, limit=paging.limit
    )


@router.post(
    "/tasks/{taskId}/approve",
    summary="Approve a waiting approval step",
    response_model=TaskRun,
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("approvals:write")],
)
async def approve(
    taskId: TaskId,
    services: ServicesDep,
    caller: CallerDep,
    body: Annotated[DecisionRequest, Body(examples=DECISION_EXAMPLES)] = DecisionRequest(),
) -> TaskRun:
    """The step completes with the decision as its result (who, when, comment, payload) and
    the run goes on. A step that is not waiting is 409 (`TASK_NOT_WAITING`)."""
    return await services.workflow.decisions.approve(
        taskId, by=caller.name, comment=body.comment, payload=body.payload
    )


@router.post(
    "/tasks/{taskId}/reject",
    summary="Reject a waiting approval step",
    response_model=TaskRun,
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("approvals:write")],
)
async def reject(
    taskId: TaskId,
    services: ServicesDep,
    caller: CallerDep,
    body: Annotated[
        DecisionRequest, Body(examples=[{"comment": "Two sources disagree; not this time"}])
    ] = DecisionRequest(),
) -> TaskRun:
    """The step fails (its fallback runs, else the run fails), or completes with
    `approved: false` when its template says `wait.onReject: continue`."""
    return await services.workflow.decisions.reject(
        taskId, by=caller.name, comment=body.comment, payload=body.payload
    )


@router.post(
    "/sessions/{sessionId}/signals/{name}",
    summary="Send a named signal to a run",
    response_model=list[TaskRun],
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("signals:send")],
)
async def send_signal(
    sessionId: Annotated[
        str, Path(pattern=ID_PATTERN, examples=["9b2599f1-ed80-4ff0-895a-60dda642c208"])
    ],
    name: Annotated[str, Path(pattern=ID_PATTERN, description="The signal's name.")],
    services: ServicesDep,
    caller: CallerDep,
    body: Annotated[SignalRequest, Body(examples=[{"payload": {"amount": 42}}])] = SignalRequest(),
) -> list[TaskRun]:
    """Every step of the run waiting for this signal completes with the payload; returns
    them. 409 (`SIGNAL_NOT_AWAITED`) when none waits for it now: a signal is not kept for a
    step that has not started waiting."""
    return await services.workflow.decisions.signal(
        sessionId, name, by=caller.name, payload=body.payload
    )
