"""Log inspection: query the in-memory buffer, or follow it live as Server-Sent Events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from ...models import Page
from ...observe.logs import LogBuffer, filter_records
from ..deps import PagingDep, ServicesDep, require
from . import ERRORS

router = APIRouter(prefix="/v1/opscore/logs", tags=["logs"], responses=ERRORS)


@dataclass
class LogFilters:
    level: str | None
    logger: str | None
    agent_id: str | None
    session_id: str | None
    task_id: str | None
    request_id: str | None
    text: str | None
    since: datetime | None
    until: datetime | None


async def log_filters(
    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] | None,
        Query(description="This level and above."),
    ] = None,
    logger: Annotated[str | None, Query(max_length=200, description="Logger name prefix.")] = None,
    agentId: Annotated[str | None, Query(max_length=128)] = None,
    sessionId: Annotated[str | None, Query(max_length=128)] = None,
    taskId: Annotated[str | None, Query(max_length=128)] = None,
    requestId: Annotated[str | None, Query(max_length=128)] = None,
    q: Annotated[str | None, Query(max_length=200, description="Text in the message.")] = None,
    since: Annotated[datetime | None, Query(description="ISO-8601, inclusive.")] = None,
    until: Annotated[datetime | None, Query(description="ISO-8601, inclusive.")] = None,
) -> LogFilters:
    return LogFilters(level, logger, agentId, sessionId, taskId, requestId, q, since, until)


FiltersDep = Annotated[LogFilters, Depends(log_filters)]


@router.get(
    "",
    summary="Query recent log records",
    response_model=Page[dict[str, Any]],
    dependencies=[require("read")],
)
async def query_logs(
    services: ServicesDep,
    filters: FiltersDep,
    paging: PagingDep,
    order: Annotated[Literal["asc", "desc"], Query(description="desc: newest first.")] = "desc",
) -> Page[dict[str, Any]]:
    """Filters combine; the buffer holds the newest OPSCORE_LOG_BUFFER_SIZE records."""
    matches = list(filter_records(services.logs.snapshot(), **asdict(filters)))
    if order == "desc":
        matches.reverse()
    return Page(
        items=matches[paging.offset : paging.offset + paging.limit],
        total=len(matches),
        offset=paging.offset,
        limit=paging.limit,
    )


@router.get(
    "/stream",
    summary="Follow log records live (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "text/event-stream": {
                    "example": 'id: 1042\ndata: {"level": "INFO", "message": "task.completed"}\n\n'
                }
            },
            "description": "An SSE stream",
        }
    },
    dependencies=[require("read")],
)
async def stream_logs(
    services: ServicesDep,
    filters: FiltersDep,
    last_event_id: Annotated[
        str | None,
        Header(
            pattern=r"^[0-9]{1,18}$",
            description="The id of the last record received: the stream resumes after it.",
        ),
    ] = None,
    backlog: Annotated[int, Query(ge=0, le=1000, description="Recent records to send first.")] = 0,
) -> StreamingResponse:
    """Each record is one ``data:`` event whose ``id`` is the record's number; reconnecting
    with ``Last-Event-ID`` resumes after it. A comment line keeps idle connections open."""
    buffer = services.logs
    if last_event_id is not None:
        start = int(last_event_id)  # the pattern admits ASCII digits only
    else:
        start = max(buffer.last_id - backlog, 0) if backlog else buffer.last_id
    return StreamingResponse(
        _events(buffer, filters, start, services.settings.sse_keepalive_seconds),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    buffer: LogBuffer, filters: LogFilters, after_id: int, keepalive: float
) -> AsyncIterator[str]:
    event = buffer.subscribe()
    try:
        yield ": connected\n\n"
        while True:
            newer = buffer.since(after_id)
            if newer:
                after_id = newer[-1]["id"]
                chunk = "".join(
                    f"id: {r['id']}\nevent: log\ndata: {json.dumps(r, default=str)}\n\n"
                    for r in filter_records(newer, **asdict(filters))
                )
                if chunk:
                    yield chunk
            event.clear()
            if buffer.last_id > after_id:
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), keepalive)
                continue
            yield ": keepalive\n\n"
    finally:
        buffer.unsubscribe(event)
