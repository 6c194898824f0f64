"""Operator maintenance: purge finished runs now."""

from __future__ import annotations

from fastapi import APIRouter, Body

from ...models import PurgeRequest, PurgeResult
from ..deps import ServicesDep, require
from . import ERRORS

router = APIRouter(prefix="/v1/opscore/admin", tags=["admin"], responses=ERRORS)


@router.post(
    "/purge",
    summary="Remove finished runs now (retention on demand)",
    response_model=PurgeResult,
    dependencies=[require("admin")],
)
async def purge(services: ServicesDep, body: PurgeRequest | None = Body(None)) -> PurgeResult:
    """Removes finished sessions (completed, failed, cancelled) that ended more than
    ``olderThanSeconds`` ago, and all but the newest ``keep``, with their tasks and dead
    letters. With neither, the configured retention is applied at once. Running sessions are
    never removed. Reading a removed session is 404; re-driving its dead letter is 410."""
    request = body or PurgeRequest()
    return await services.workflow.retention.purge(
        older_than_seconds=request.older_than_seconds, keep=request.keep
    )
