"""The agent registry."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from ...models import ID_PATTERN, Agent, AgentCreate, Page
from ..deps import PagingDep, ServicesDep, require
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/agents", tags=["agents"], responses=ERRORS)
AgentId = Annotated[
    str, Path(pattern=ID_PATTERN, description="The agent's id.", examples=["summarizer-1"])
]


@router.post(
    "",
    summary="Register an agent",
    status_code=status.HTTP_201_CREATED,
    response_model=Agent,
    responses={
        200: {"model": Agent, "description": "Identical registration already existed"},
        **CONFLICT,
    },
    dependencies=[require("agents:write")],
)
async def register_agent(body: AgentCreate, services: ServicesDep, response: Response) -> Agent:
    """Register an agent; agentId is generated when omitted. Repeating an identical
    registration answers 200 with the existing agent; different details under a taken id, 409."""
    agent, created = await services.agents.register_agent(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return agent


@router.get("", summary="List agents", response_model=Page[Agent], dependencies=[require("read")])
async def list_agents(
    services: ServicesDep,
    paging: PagingDep,
    state: Annotated[
        str | None, Query(max_length=64, description="Only agents in this state.")
    ] = None,
    capability: Annotated[
        str | None, Query(max_length=100, description="Only agents with it.")
    ] = None,
) -> Page[Agent]:
    return await services.agents.list_agents(
        state=state, capability=capability, offset=paging.offset, limit=paging.limit
    )


@router.get(
    "/{agentId}",
    summary="Get an agent",
    response_model=Agent,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def get_agent(agentId: AgentId, services: ServicesDep) -> Agent:
    return await services.agents.get_agent(agentId)


@router.delete(
    "/{agentId}",
    summary="Deregister an agent",
    response_model=Agent,
    responses=NOT_FOUND,
    dependencies=[require("agents:write")],
)
async def deregister_agent(agentId: AgentId, services: ServicesDep) -> Agent:
    """Remove the agent and its state history; tasks it was running are queued again."""
    return await services.agents.deregister_agent(agentId)
