"""The FastAPI app: middleware, routers (each behind the API-key dependency), error mapping,
and a lifespan that starts and stops the dispatcher."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace import SpanProcessor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from . import __version__
from .config import Settings
from .container import Services, build_services
from .dispatch.transports import Transport
from .errors import OpsCoreError, StorageError
from .http.deps import authenticate
from .http.envelope import UNEXPECTED, ErrorReply, from_opscore_error, from_validation_errors
from .http.gateway import RequestContextMiddleware
from .http.ingest import StateReportRoute
from .http.routes import (
    a2a,
    admin,
    agents,
    apidocs,
    console,
    dashboard,
    decisions,
    limits,
    logs,
    schedules,
    sessions,
    state,
    subscriptions,
    system,
    tasks,
    telemetry,
    usage,
    webhooks,
    workers,
    workflows,
)
from .http.run_trigger import RunTriggerRoute
from .observe.logs import configure_logging, request_id_var
from .storage.base import Storage

logger = logging.getLogger("opscore.api")

DESCRIPTION = """
Ops-Core is the operations core for fleets of AI agents: agents report their state here,
operators start workflows, and every task is dispatched, retried, traced and visible.

**Auth**: every route except `/health`, `/ready` and the signed AgentKit webhook needs an API
key, sent as `Authorization: Bearer <key>` (what AgentKit agents send) or `X-API-Key: <key>`.
Click *Authorize* and paste your key to try the routes here.

**Errors** share one shape: `{"error": {"code", "message", "details"}, "detail", "requestId"}`.
"""

TAGS = [
    {"name": "agents", "description": "The agent registry."},
    {"name": "state", "description": "Lifecycle state reports (AgentKit SDK) and history."},
    {"name": "workflows", "description": "Templates (JSON/YAML) and triggering runs."},
    {"name": "sessions", "description": "Workflow runs and ad-hoc sessions, with task timelines."},
    {"name": "tasks", "description": "Task runs, explicit results and dead letters."},
    {
        "name": "approvals and signals",
        "description": "Steps waiting for a person or an event (docs/workflows.md).",
    },
    {"name": "schedules", "description": "Templates run on a cron or an interval."},
    {"name": "events", "description": "Signed webhooks out, their delivery logs (docs/events.md)."},
    {"name": "limits", "description": "Concurrency limits on capabilities."},
    {"name": "workers", "description": "Pull workers: claim, lease, result (docs/workers.md)."},
    {"name": "usage and budgets", "description": "Reported usage and budgets on it."},
    {"name": "logs", "description": "Live log inspection."},
    {"name": "telemetry", "description": "Traces and Prometheus metrics."},
    {"name": "console", "description": "The console's own questions: who am I, the last hour."},
    {
        "name": "webhooks",
        "description": (
            "AgentKit's signed registration webhook, and A2A agents' push notifications "
            "(checked by each task's token)."
        ),
    },
    {"name": "admin", "description": "Retention: remove finished runs now (admin keys)."},
    {"name": "system", "description": "Health and readiness."},
]


def _reply(request: Request, reply: ErrorReply) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None) or request_id_var.get()
    return JSONResponse(
        reply.content(request_id), status_code=reply.status, headers=reply.headers or None
    )


async def _on_opscore_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OpsCoreError)
    if isinstance(exc, StorageError):
        # a request may have stopped between two writes (a task queued, its queue entry not):
        # once the store answers again the dispatcher reconciles
        request.app.state.services.dispatcher.request_reconcile()
    return _reply(request, from_opscore_error(exc))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _reply(request, from_validation_errors(exc.errors()))


_HTTP_CODES = {
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    400: "BAD_REQUEST",
    413: "PAYLOAD_TOO_LARGE",
}


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
        return _reply(
            request,
            ErrorReply(400, "INVALID_JSON", "Request body could not be parsed as UTF-8 JSON"),
        )
    code = _HTTP_CODES.get(exc.status_code, "HTTP_ERROR")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ").capitalize()
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": _allowed_methods(request)}
    return _reply(request, ErrorReply(exc.status_code, code, message, headers=dict(headers or {})))


def _allowed_methods(request: Request) -> str:
    """Every method the path supports; Starlette lists only the first route's when one path
    has a route per method."""
    path = request.url.path
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            methods |= {m.upper() for m in operations}
    return ", ".join(sorted(methods))


async def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return _reply(request, UNEXPECTED)


def create_app(
    settings: Settings | None = None,
    *,
    storage: Storage | None = None,
    transport: Transport | None = None,
    span_processors: Sequence[SpanProcessor] = (),
) -> FastAPI:
    """Build the app; tests pass settings (and fakes) instead of touching the environment.

    Raises ConfigError when the configuration cannot work (no key, unknown store...).
    """
    settings = settings or Settings()
    log_buffer = configure_logging(settings)
    services = build_services(
        settings, log_buffer, storage=storage, transport=transport, span_processors=span_processors
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = OpsCoreApp(
        title="Ops-Core",
        version=__version__,
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        swagger_ui_parameters={"persistAuthorization": True},
        docs_url=None,  # served from files shipped with the package (routes/apidocs.py)
        redoc_url=None,
    )
    app.state.services = services
    install(app, services)
    return app


class OpsCoreApp(FastAPI):
    """FastAPI behind Ops-Core's gateway: request id, authentication, rate and body limits, the
    access line, and the state-report fast path run before FastAPI's own middleware stack.

    Starlette puts user middleware inside its error, telemetry and body-limit layers; for a
    state report, the call every agent makes constantly, those layers cost as much as the work
    itself. Outside them, the gateway answers reports directly and passes everything else on
    (FastAPI's error middleware still turns unexpected exceptions into the error envelope).
    """

    gateway: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.gateway is not None:
            await self.gateway(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def fastapi(self, scope: Scope, receive: Receive, send: Send) -> None:
        """FastAPI itself, without the gateway: what the gateway passes requests on to."""
        await super().__call__(scope, receive, send)


def install(app: OpsCoreApp, services: Services) -> None:
    """Routers, error handlers and middleware."""
    app.add_exception_handler(OpsCoreError, _on_opscore_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)

    app.include_router(system.router)
    app.include_router(webhooks.router)
    app.include_router(a2a.notifications)  # checked by each task's token (routes/a2a.py)
    app.include_router(dashboard.router)
    app.include_router(apidocs.router)
    app.include_router(state.ingest)  # authenticated by the middleware; see http/routes/state.py
    protected = [Depends(authenticate)]
    for module in (
        agents,
        a2a,
        state,
        workflows,
        sessions,
        tasks,
        decisions,
        subscriptions,
        schedules,
        limits,
        workers,
        usage,
        logs,
        telemetry,
        console,
        admin,
    ):
        app.include_router(module.router, dependencies=protected)

    settings = services.settings
    gateway: ASGIApp = RequestContextMiddleware(
        app.fastapi,
        max_body_bytes=settings.max_body_bytes,
        body_timeout=settings.body_timeout_seconds,
        access_log=settings.access_log,
        telemetry=services.telemetry,
        keys=services.keys,
        rate_limiter=services.rate_limiter,
        fast_routes=(StateReportRoute(services), RunTriggerRoute(services)),
    )
    if settings.cors_origins:  # outermost, so preflights are answered before the key check
        gateway = CORSMiddleware(
            gateway,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Idempotency-Key"],
        )
    app.gateway = gateway
