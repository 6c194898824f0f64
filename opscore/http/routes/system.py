"""Health and readiness: no key, for load balancers and compose."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ... import __version__
from ...errors import StorageError
from ..deps import ServicesDep

router = APIRouter(tags=["system"])


@router.get(
    "/health",
    summary="Liveness: the process answers",
    responses={
        200: {"content": {"application/json": {"example": {"status": "ok", "version": "0.1.0"}}}}
    },
)
async def health() -> dict[str, str]:
    """Cheap on purpose: touches no store."""
    return {"status": "ok", "version": __version__}


@router.get(
    "/ready",
    summary="Readiness: the store answers and the dispatcher runs",
    responses={
        200: {
            "content": {
                "application/json": {
                    "example": {"status": "ready", "checks": {"storage": "ok", "dispatcher": "ok"}}
                }
            }
        },
        503: {"description": "Not ready"},
    },
)
async def ready(services: ServicesDep) -> JSONResponse:
    checks = {"storage": "ok", "dispatcher": "ok"}
    try:
        await services.storage.ping()
    except StorageError as exc:
        checks["storage"] = exc.message
    if services.settings.dispatcher_enabled:
        checks["dispatcher"] = services.dispatcher.status
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ok else "not ready", "checks": checks}, status_code=200 if ok else 503
    )
