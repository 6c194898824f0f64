"""Schedules: a template run on a cron expression or an interval."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response, status

from ...models import ID_PATTERN, Page, RunAccepted, Schedule, ScheduleCreate, ScheduleFields
from ..deps import PagingDep, ServicesDep, require
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/schedules", tags=["schedules"], responses=ERRORS)
ScheduleId = Annotated[
    str, Path(pattern=ID_PATTERN, description="The schedule's id.", examples=["digest-weekdays"])
]
CREATE_EXAMPLE = {
    "scheduleId": "digest-weekdays",
    "workflowId": "digest",
    "cron": "0 9 * * mon-fri",
    "timezone": "Europe/Paris",
    "payload": {"topic": "agents"},
    "overlap": "skip",
    "catchUp": "one",
}


@router.post(
    "",
    summary="Schedule a template",
    status_code=status.HTTP_201_CREATED,
    response_model=Schedule,
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("workflows:write")],
)
async def create_schedule(
    body: Annotated[ScheduleCreate, Body(examples=[CREATE_EXAMPLE])], services: ServicesDep
) -> Schedule:
    """Give `cron` (five fields, or @hourly, @daily...) read in `timezone`, or
    `intervalSeconds`. Each tick starts one run with `payload`, across replicas and restarts;
    `overlap` says what a tick does while the previous run still runs, `catchUp` what happens
    to ticks missed while Ops-Core was down. 422 `INVALID_SCHEDULE` names what is wrong."""
    return await services.workflow.schedules.create(body)


@router.get(
    "", summary="List schedules", response_model=Page[Schedule], dependencies=[require("read")]
)
async def list_schedules(services: ServicesDep, paging: PagingDep) -> Page[Schedule]:
    return await services.workflow.schedules.list_schedules(
        offset=paging.offset, limit=paging.limit
    )


@router.get(
    "/{scheduleId}",
    summary="Get a schedule",
    response_model=Schedule,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def get_schedule(scheduleId: ScheduleId, services: ServicesDep) -> Schedule:
    return await services.workflow.schedules.get(scheduleId)


@router.patch(
    "/{scheduleId}",
    summary="Change a schedule",
    response_model=Schedule,
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("workflows:write")],
)
async def update_schedule(
    scheduleId: ScheduleId,
    body: Annotated[ScheduleFields, Body(examples=[{"cron": "30 8 * * *", "payload": {"n": 5}}])],
    services: ServicesDep,
) -> Schedule:
    """Change what is given (`cron` replaces an interval and the other way round); the next
    tick is worked out again from now."""
    return await services.workflow.schedules.update(scheduleId, body)


@router.post(
    "/{scheduleId}/pause",
    summary="Pause a schedule",
    response_model=Schedule,
    responses=NOT_FOUND,
    dependencies=[require("workflows:write")],
)
async def pause_schedule(scheduleId: ScheduleId, services: ServicesDep) -> Schedule:
    return await services.workflow.schedules.set_paused(scheduleId, True)


@router.post(
    "/{scheduleId}/resume",
    summary="Resume a paused schedule",
    response_model=Schedule,
    responses=NOT_FOUND,
    dependencies=[require("workflows:write")],
)
async def resume_schedule(scheduleId: ScheduleId, services: ServicesDep) -> Schedule:
    """It fires from its next tick; ticks that passed while it was paused are not caught up."""
    return await services.workflow.schedules.set_paused(scheduleId, False)


@router.post(
    "/{scheduleId}/trigger",
    summary="Run a schedule's template now",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunAccepted,
    responses=NOT_FOUND,
    dependencies=[require("runs:write")],
)
async def trigger_schedule(scheduleId: ScheduleId, services: ServicesDep) -> RunAccepted:
    """One run now with the schedule's payload, whatever its next tick or overlap policy."""
    return await services.workflow.schedules.trigger(scheduleId)


@router.delete(
    "/{scheduleId}",
    summary="Delete a schedule",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    dependencies=[require("workflows:write")],
)
async def delete_schedule(scheduleId: ScheduleId, services: ServicesDep) -> Response:
    await services.workflow.schedules.delete(scheduleId)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
