"""Traces and Prometheus metrics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from ...errors import NotFoundError
from ...models import ID_PATTERN
from ..deps import ServicesDep, require
from . import ERRORS, NOT_FOUND

router = APIRouter(tags=["telemetry"], responses=ERRORS)
_TRACE_ID = r"^[0-9a-f]{32}$"


@router.get(
    "/v1/opscore/traces/{traceId}",
    summary="Spans of one trace",
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def get_trace(
    traceId: Annotated[
        str,
        Path(
            pattern=_TRACE_ID,
            description="32 hex digits.",
            examples=["4bf92f3577b34da6a3ce929d0e0e4736"],
        ),
    ],
    services: ServicesDep,
) -> dict[str, Any]:
    """Each span has its parent, start, end, duration and attributes. A workflow run's trace
    holds the trigger request, ``workflow.run``, and per task ``task`` with ``task.queued``,
    ``task.dispatch`` and ``task.run`` children."""
    spans = services.telemetry.tracer.trace(traceId)
    if not spans:
        raise NotFoundError(
            f"Trace '{traceId}' not found (or no longer kept)", code="TRACE_NOT_FOUND"
        )
    return {"traceId": traceId, "spans": spans}


@router.get(
    "/v1/opscore/sessions/{sessionId}/spans",
    summary="Spans of a session's run",
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def session_spans(
    sessionId: Annotated[
        str, Path(pattern=ID_PATTERN, examples=["9b2599f1-ed80-4ff0-895a-60dda642c208"])
    ],
    services: ServicesDep,
) -> dict[str, Any]:
    session = await services.workflow.sessions.get_session(sessionId)
    spans = services.telemetry.tracer.trace(session.trace_id) if session.trace_id else []
    return {"traceId": session.trace_id, "spans": spans}


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "content": {
                "text/plain": {
                    "example": 'opscore_queue_depth 3.0\nopscore_agents{state="idle"} 8.0\n'
                }
            }
        }
    },
    dependencies=[require("read")],
)
async def metrics(services: ServicesDep) -> Response:
    """Requests and latency by route, state reports, runs by template and status, task
    outcomes, hand-overs by transport and answer, queue depth and the oldest ready task's
    wait, dead letters, dispatch latency, task duration, agents by state, probes
    (docs/operations.md lists them). Scrape with the key as a bearer token."""
    body = await services.telemetry.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
