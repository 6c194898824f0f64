"""Concurrency limits on capabilities (a workflow's own limit is its template's
maxConcurrentRuns)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response, status

from ...models import Capability, CapabilityLimit, LimitUpdate, Page
from ..deps import ServicesDep, require
from . import ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/limits", tags=["limits"], responses=ERRORS)
CapabilityName = Annotated[
    Capability, Path(description="The capability limited.", examples=["summarize"])
]


@router.get(
    "",
    summary="Concurrency limits on capabilities",
    response_model=Page[CapabilityLimit],
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "items": [{"capability": "summarize", "maxRunning": 4, "running": 2}],
                        "total": 1,
                        "offset": 0,
                        "limit": 1,
                    }
                }
            }
        }
    },
    dependencies=[require("read")],
)
async def list_limits(services: ServicesDep) -> Page[CapabilityLimit]:
    """Each limited capability with how many of its tasks hold a slot now."""
    return await services.workflow.engine.limits.list_limits()


@router.put(
    "/capabilities/{capability}",
    summary="Limit how many tasks of a capability run at once",
    response_model=CapabilityLimit,
    dependencies=[require("workflows:write")],
)
async def set_limit(
    capability: CapabilityName,
    body: Annotated[LimitUpdate, Body(examples=[{"maxRunning": 4}])],
    services: ServicesDep,
) -> CapabilityLimit:
    """At most `maxRunning` tasks needing this capability are dispatched or running at once,
    across replicas; the others wait in the queue in their order. Lowering a limit below what
    runs now lets those finish and holds the rest back."""
    return await services.workflow.engine.limits.set_limit(capability, body.max_running)


@router.delete(
    "/capabilities/{capability}",
    summary="Remove a capability's limit",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    dependencies=[require("workflows:write")],
)
async def remove_limit(capability: CapabilityName, services: ServicesDep) -> Response:
    await services.workflow.engine.limits.remove_limit(capability)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
