"""Lifecycle state: AgentKit's state reports, current state and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from ...container import Services
from ...models import (
    ID_PATTERN,
    CurrentState,
    HeartbeatAccepted,
    Page,
    StateAccepted,
    StateRecord,
    StateReport,
)
from ..deps import CallerDep, PagingDep, ServicesDep, require
from ..ingest import report_state as answer_state_report
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/agent", tags=["state"], responses=ERRORS)
# Mounted without the router-wide auth dependency: the gateway answers this route itself.
ingest = APIRouter(prefix="/v1/opscore/agent", tags=["state"])
AgentId = Annotated[
    str, Path(pattern=ID_PATTERN, description="The agent's id.", examples=["summarizer-1"])
]

_EXAMPLE = {
    "agentId": "3f2b9c1e-7a44-4d0e-9a51-2f6f0c8d1e77",
    "timestamp": "2026-11-24T10:15:30.123456+00:00",
    "state": "active",
    "details": {},
}


_STATE_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": StateReport.model_json_schema(ref_template="#/components/schemas/{model}"),
            "example": _EXAMPLE,
        }
    },
}


@ingest.post(
    "/{agentId}/state",
    summary="Report an agent's state (AgentKit SDK)",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=StateAccepted,
    responses={**ERRORS, **NOT_FOUND, **CONFLICT},
    openapi_extra={
        "requestBody": _STATE_BODY,
        "security": [{"HTTPBearer": []}, {"APIKeyHeader": []}],
    },
)
async def report_state(agentId: AgentId, request: Request, caller: CallerDep) -> Response:
    """Exactly AgentKit's ``report_state_to_opscore``: path and body agentId must agree, the
    state must be known, and the timestamp must not be older than the current state's (409).
    An exact replay of the current state answers 202 with ``duplicate: true``.

    The middleware answers this route itself (see ``opscore/http/ingest.py``); this handler documents
    it in OpenAPI and gives the same answers when the app runs without that middleware."""
    services: Services = request.app.state.services
    status_code, body, headers = await answer_state_report(
        services, caller, agentId, await request.body()
    )
    return Response(body, status_code=status_code, headers=headers, media_type="application/json")


@router.get(
    "/{agentId}/state",
    summary="Current state of an agent",
    response_model=CurrentState,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def current_state(agentId: AgentId, services: ServicesDep) -> CurrentState:
    """A registered agent that has not reported yet answers 200 with a null state."""
    return await services.states.current_state(agentId)


@router.post(
    "/{agentId}/heartbeat",
    summary="Tell Ops-Core an agent is alive (no state change)",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=HeartbeatAccepted,
    responses=NOT_FOUND,
    dependencies=[require("state:write")],
)
async def heartbeat(
    agentId: AgentId, services: ServicesDep, caller: CallerDep
) -> HeartbeatAccepted:
    """The cheap call for agents that declared ``heartbeatIntervalSeconds``: it counts as a
    report for liveness without changing the state; an offline agent is available again."""
    caller.require_agent(agentId)
    agent = await services.states.heartbeat(agentId)
    return HeartbeatAccepted(agent_id=agent.agent_id, state=agent.state, last_seen=agent.last_seen)


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
    return await services.states.state_history(agentId, offset=paging.offset, limit=paging.limit)
