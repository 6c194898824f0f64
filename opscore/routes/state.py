"""Lifecycle state: AgentKit's state reports, current state and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ..auth import Caller
from ..container import Services
from ..deps import PagingDep, ServicesDep, require
from ..models import ID_PATTERN, Page, StateAccepted, StateRecord, StateReport
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/agent", tags=["state"], responses=ERRORS)
# Mounted without the auth dependency: RequestContextMiddleware authenticates every /v1 request.
ingest = APIRouter(prefix="/v1/opscore/agent", tags=["state"])
AgentId = Annotated[str, Path(pattern=ID_PATTERN, description="The agent's id.")]

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
async def report_state(agentId: AgentId, request: Request) -> Response:
    """Exactly AgentKit's ``report_state_to_opscore``: path and body agentId must agree, the
    state must be known, and the timestamp must not be older than the current state's (409).
    An exact replay of the current state answers 202 with ``duplicate: true``.

    The hottest route, so it skips what costs most and adds nothing here: dependency injection
    (the middleware already authenticated the caller), FastAPI's generic body handling (one
    pydantic parse of the raw bytes instead), and response re-validation."""
    caller: Caller = request.state.caller
    caller.require("state:write")
    caller.require_agent(agentId)
    try:
        body = StateReport.model_validate_json(await request.body())
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None
    services: Services = request.app.state.services
    accepted = await services.lifecycle.report_state(agentId, body)
    return Response(
        accepted.model_dump_json(by_alias=True), status_code=202, media_type="application/json"
    )


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
