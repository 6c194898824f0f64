"""Pure ASGI middleware: request id, body-size limit, one JSON access line per request.

Pure ASGI (not BaseHTTPMiddleware) keeps per-request overhead to a few attribute lookups and
does not wrap the response stream in extra tasks.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import KeyStore, presented_key
from .errors import AuthenticationError, RateLimitedError
from .logging_config import request_id_var
from .ratelimit import RateLimiter
from .telemetry import Telemetry
from .tracing import Span, current_span, new_trace_id, parse_traceparent

access_logger = logging.getLogger("opscore.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


def error_content(
    status: int, code: str, message: str, details: Any = None, request_id: str | None = None
) -> dict[str, Any]:
    """The one error envelope; ``detail`` repeats the message for AgentKit's SDK."""
    return {
        "error": {"code": code, "message": message, "details": details},
        "detail": message,
        "requestId": request_id,
    }


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    request_id: str,
    *,
    retry_after: float | None = None,
) -> None:
    body = json.dumps(error_content(status, code, message, None, request_id)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    if retry_after is not None:
        headers.append((b"retry-after", str(int(retry_after)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestContextMiddleware:
    """Assigns the request id, enforces the body limit and logs the request when it ends."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        access_log: bool = True,
        telemetry: Telemetry | None = None,
        keys: KeyStore | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log
        self.telemetry = telemetry
        self.keys = keys
        self.rate_limiter = rate_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        parent = parse_traceparent(_header(scope, b"traceparent"))
        span = Span(
            name="http.request",
            trace_id=parent[0] if parent else new_trace_id(),
            parent_id=parent[1] if parent else None,
            attributes={"requestId": request_id},
        )
        span_token = current_span.set(span)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status_holder = [500]
        header_value = request_id.encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", header_value)]
            await send(message)

        try:
            if self.keys is not None and _needs_key(scope["path"]):
                # Authenticate before reading or parsing any body: an anonymous caller gets
                # 401 and nothing else, whatever it sent.
                try:
                    caller = self.keys.resolve(
                        presented_key(
                            _header(scope, b"authorization"), _header(scope, b"x-api-key")
                        )
                    )
                    if self.rate_limiter is not None:
                        self.rate_limiter.check(caller)
                except (AuthenticationError, RateLimitedError) as exc:
                    status_holder[0] = exc.status_code
                    retry = getattr(exc, "retry_after", None)
                    await _send_error(
                        send, exc.status_code, exc.code, exc.message, request_id, retry_after=retry
                    )
                    return
                scope["state"]["caller"] = caller
            if scope["method"].encode() in _BODY_METHODS:
                buffered = await self._read_body(scope, receive)
                if buffered is None:
                    status_holder[0] = 413
                    await _send_error(
                        send,
                        413,
                        "PAYLOAD_TOO_LARGE",
                        f"Request body exceeds {self.max_body_bytes} bytes",
                        request_id,
                    )
                    return
                receive = _replay(buffered, receive)
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            route_path = getattr(route, "path", None) or "unmatched"
            if self.telemetry is not None:
                self.telemetry.observe_request(
                    scope["method"], route_path, status_holder[0], elapsed
                )
                if parent is not None or span.attributes.get("keep"):
                    span.name = f"{scope['method']} {route_path}"
                    span.attributes.update(status=status_holder[0])
                    self.telemetry.tracer.record(
                        span, status="error" if status_holder[0] >= 500 else "ok"
                    )
            current_span.reset(span_token)
            if self.access_log:
                access_logger.info(
                    "%s %s %s",
                    scope["method"],
                    scope["path"],
                    status_holder[0],
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status_holder[0],
                        "durationMs": round(elapsed * 1000, 3),
                        "client": (scope.get("client") or ("", 0))[0],
                        **_ids(scope.get("path_params")),
                    },
                )
            request_id_var.reset(token)

    async def _read_body(self, scope: Scope, receive: Receive) -> list[Message] | None:
        """Read the whole body up front (it is bounded); None when it is too large."""
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body_bytes:
                        return None
                except ValueError:
                    return None
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return messages


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


_OPEN_PATHS = ("/v1/opscore/internal/agent/notify",)
_ID_PARAMS = ("agentId", "sessionId", "taskId", "workflowId")


def _ids(path_params: dict[str, str] | None) -> dict[str, str]:
    """agentId/sessionId/taskId from the route, so access lines filter like operation lines."""
    if not path_params:
        return {}
    return {k: v for k, v in path_params.items() if k in _ID_PARAMS}


def _needs_key(path: str) -> bool:
    return (path.startswith("/v1/") and path not in _OPEN_PATHS) or path == "/metrics"


def _header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            try:
                return value.decode("ascii")
            except UnicodeDecodeError:
                return None
    return None


def _incoming_request_id(scope: Scope) -> str | None:
    candidate = _header(scope, b"x-request-id")
    return candidate if candidate and _VALID_REQUEST_ID.match(candidate) else None
