"""Sessions: workflow runs and ad-hoc agent sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, status

from ...models import (
    ID_PATTERN,
    Page,
    RunTimeline,
    Session,
    SessionCreate,
    SessionDetail,
    SessionStatus,
    SessionUpdate,
)
from ..deps import PagingDep, ServicesDep, require
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/sessions", tags=["sessions"], responses=ERRORS)
SessionId = Annotated[
    str,
    Path(
        pattern=ID_PATTERN,
        description="The session's id.",
        examples=["9b2599f1-ed80-4ff0-895a-60dda642c208"],
    ),
]


@router.post(
    "",
    summary="Start an ad-hoc session",
    status_code=status.HTTP_201_CREATED,
    response_model=Session,
    responses=NOT_FOUND,
    dependencies=[require("runs:write")],
)
async def start_session(
    body: Annotated[
        SessionCreate,
        Body(examples=[{"agentId": "summarizer-1", "name": "ad-hoc research", "metadata": {}}]),
    ],
    services: ServicesDep,
) -> Session:
    """A span of an agent's work outside a workflow; workflow runs create their own."""
    return await services.workflow.sessions.start_session(body)


@router.get(
    "",
    summary="List sessions, newest first",
    response_model=Page[Session],
    dependencies=[require("read")],
)
async def list_sessions(
    services: ServicesDep,
    paging: PagingDep,
    status_: Annotated[SessionStatus | None, Query(alias="status")] = None,
    workflow_id: Annotated[str | None, Query(alias="workflowId", max_length=128)] = None,
    agent_id: Annotated[str | None, Query(alias="agentId", max_length=128)] = None,
) -> Page[Session]:
    return await services.workflow.sessions.list_sessions(
        status=status_.value if status_ else None,
        workflow_id=workflow_id,
        agent_id=agent_id,
        offset=paging.offset,
        limit=paging.limit,
    )


@router.get(
    "/{sessionId}",
    summary="A session with its tasks' timeline",
    response_model=SessionDetail,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def get_session(sessionId: SessionId, services: ServicesDep) -> SessionDetail:
    """Status, and for each task: status, attempts (agent, times, outcome), result or error."""
    return await services.workflow.runs.session_detail(sessionId)


@router.get(
    "/{sessionId}/timeline",
    summary="Everything that happened in a run, in time order",
    response_model=RunTimeline,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def get_timeline(sessionId: SessionId, services: ServicesDep) -> RunTimeline:
    """The run's start and end, each task queued and ended, every attempt (handed over,
    started, ended, with its outcome), the state reports of the agents that worked on it
    within the run's window, the run's log records and the spans of its trace: one list,
    oldest first. ``partial`` names sources that may be missing events."""
    return await services.timelines.timeline(sessionId)


@router.patch(
    "/{sessionId}",
    summary="Update an ad-hoc session",
    response_model=Session,
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("runs:write")],
)
async def update_session(
    sessionId: SessionId,
    body: SessionUpdate,
    services: ServicesDep,
) -> Session:
    """Merge metadata, set an error, or close the session (completed/failed/cancelled)."""
    return await services.workflow.sessions.update_session(sessionId, body)


@router.post(
    "/{sessionId}/cancel",
    summary="Cancel a running session",
    response_model=SessionDetail,
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("runs:write")],
)
async def cancel_session(sessionId: SessionId, services: ServicesDep) -> SessionDetail:
    """Open tasks are cancelled; late reports about them are ignored."""
    return await services.workflow.runs.cancel_session(sessionId)
