"""Lifecycle state: AgentKit's state reports, current state and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, status

from ..deps import CallerDep, PagingDep, ServicesDep, require
from ..models import ID_PATTERN, Page, StateAccepted, StateRecord, StateReport
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/agent", tags=["state"], responses=ERRORS)
AgentId = Annotated[str, Path(pattern=ID_PATTERN, description="The agent's id.")]

_EXAMPLE = {
    "agentId": "3f2b9c1e-7a44-4d0e-9a51-2f6f0c8d1e77",
    "timestamp": "2026-11-24T10:15:30.123456+00:00",
    "state": "active",
    "details": {},
}


@router.post(
    "/{agentId}/state",
    summary="Report an agent's state (AgentKit SDK)",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StateAccepted,
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("state:write")],
)
async def report_state(
    agentId: AgentId,
    body: Annotated[StateReport, Body(examples=[_EXAMPLE])],
    services: ServicesDep,
    caller: CallerDep,
) -> StateAccepted:
    """Exactly AgentKit's ``report_state_to_opscore``: path and body agentId must agree, the
    state must be known, and the timestamp must not be older than the current state's (409).
    An exact replay of the current state answers 202 with ``duplicate: true``."""
    caller.require_agent(agentId)
    return await services.lifecycle.report_state(agentId, body)


@router.get(
    "/{agentId}/state",
    summary="Current state of an agent",
    response_model=StateRecord,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def current_state(agentId: AgentId, services: ServicesDep) -> StateRecord:
    return await services.lifecycle.current_state(agentId)


@router.get(
    "/{agentId}/state/history",
    summary="State history, newest first",
    response_model=Page[StateRecord],
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def state_history(
    agentId: AgentId,
    services: ServicesDep,
    paging: PagingDep,
) -> Page[StateRecord]:
    """Bounded per agent by OPSCORE_STATE_HISTORY_LIMIT (oldest records dropped)."""
    return await services.lifecycle.state_history(agentId, offset=paging.offset, limit=paging.limit)
