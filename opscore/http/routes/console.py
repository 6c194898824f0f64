"""What the operator console needs besides the resources: the caller's role (to show only the
actions it may take) and the last hour minute by minute (its charts)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ... import __version__
from ...models.console import Activity, ActivityMinute, Caller
from ...security.keys import ROLE_SCOPES
from ..deps import CallerDep, ServicesDep, require
from . import ERRORS

router = APIRouter(prefix="/v1/opscore", tags=["console"], responses=ERRORS)
_MINUTE = {
    "at": "2026-12-04T10:15:00+00:00",
    "completed": 42,
    "failed": 3,
    "runsCompleted": 12,
    "runsFailed": 1,
    "runsCancelled": 0,
    "queueDepth": 7,
}


@router.get(
    "/me",
    summary="Who the key is: name, role, scopes",
    response_model=Caller,
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {
                        "name": "ops-team",
                        "role": "viewer",
                        "scopes": ["read"],
                        "version": "0.1.0",
                    }
                }
            }
        }
    },
)
async def me(caller: CallerDep) -> Caller:
    """Any valid key may ask. The console hides the actions the role may not take (the API
    refuses them anyway)."""
    scopes = sorted(ROLE_SCOPES.get(caller.role, frozenset()))
    return Caller(name=caller.name, role=caller.role, scopes=scopes, version=__version__)


@router.get(
    "/activity",
    summary="The last hour per minute: tasks, runs, queue depth",
    response_model=Activity,
    responses={200: {"content": {"application/json": {"example": {"minutes": [_MINUTE]}}}}},
    dependencies=[require("read")],
)
async def activity(
    services: ServicesDep,
    minutes: Annotated[int, Query(ge=1, le=60, description="How many minutes, up to now.")] = 60,
) -> Activity:
    """This replica's counts (tasks completed and failed, runs ended) and the store's queue
    depth, sampled every few seconds, one entry per minute, oldest first."""
    series = services.telemetry.activity.last(minutes)
    return Activity(minutes=[ActivityMinute.model_validate(m) for m in series])
