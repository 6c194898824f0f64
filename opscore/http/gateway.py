"""Pure ASGI middleware: request id, body-size limit, one JSON access line per request.

Pure ASGI (not BaseHTTPMiddleware) keeps per-request overhead to a few attribute lookups and
does not wrap the response stream in extra tasks.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Sequence

from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AuthenticationError, RateLimitedError
from ..observe.logs import request_id_var
from ..observe.metrics import Telemetry
from ..observe.tracing import Span, current_span, new_trace_id, parse_traceparent
from ..security.keys import KeyStore, presented_key
from ..security.ratelimit import RateLimiter
from .bounded_receive import receive_within
from .envelope import ErrorReply, from_opscore_error
from .fastpath import FastRoute
from .fastpath import header as _header

access_logger = logging.getLogger("opscore.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}
# what is read and dropped of a too-large body so its sender sees the 413
DRAIN_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 5.0


async def _send_json(
    send: Send, status: int, body: bytes, request_id: str, headers: dict[str, str] | None = None
) -> None:
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id.encode()),
    ]
    if headers:
        raw.extend((k.lower().encode(), v.encode()) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, reply: ErrorReply, request_id: str) -> None:
    await _send_json(send, reply.status, reply.body(request_id), request_id, reply.headers)


class RequestContextMiddleware:
    """Assigns the request id, authenticates, enforces the body limit and logs the request when
    it ends; answers the calls of ``fast_routes`` itself when they let it (state reports and run
    triggers: see ``opscore/http/fastpath.py``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        body_timeout: float = 30.0,
        access_log: bool = True,
        telemetry: Telemetry | None = None,
        keys: KeyStore | None = None,
        rate_limiter: RateLimiter | None = None,
        fast_routes: Sequence[FastRoute] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.access_log = access_log
        self.telemetry = telemetry
        self.keys = keys
        self.rate_limiter = rate_limiter
        # a fast route needs the caller, so it only runs where this middleware authenticates
        self.fast_routes = tuple(fast_routes) if keys is not None else ()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or _new_request_id()
        token = request_id_var.set(request_id)
        parent = parse_traceparent(_header(scope, b"traceparent"))
        span = Span(
            name="http.request",
            trace_id=parent[0] if parent else new_trace_id(),
            parent_id=parent[1] if parent else None,
            attributes={"requestId": request_id},
            kind=SpanKind.SERVER,
        )
        span_token = current_span.set(span)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        fast = self._fast_route(scope) if self.fast_routes else None
        route_path: str | None = None
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
                    await _send_error(send, from_opscore_error(exc), request_id)
                    return
                scope["state"]["caller"] = caller
            if scope["method"].encode() in _BODY_METHODS:
                try:
                    buffered = await self._read_body(scope, receive)
                except BodyTimeoutError:
                    status_holder[0] = 408
                    slow = ErrorReply(
                        408,
                        "REQUEST_TIMEOUT",
                        f"The request body did not arrive within {self.body_timeout:g}s",
                    )
                    await _send_error(send, slow, request_id)
                    return
                if buffered is None:
                    status_holder[0] = 413
                    too_large = ErrorReply(
                        413,
                        "PAYLOAD_TOO_LARGE",
                        f"Request body exceeds {self.max_body_bytes} bytes",
                    )
                    await _send_error(send, too_large, request_id)
                    return
                if fast is not None and "caller" in scope["state"]:
                    route, params = fast
                    if buffered[-1]["type"] != "http.request":
                        route_path = route.route
                        scope["path_params"] = params
                        return  # the client went away before sending its whole body
                    body = b"".join(m.get("body", b"") for m in buffered)
                    reply = await route.answer(scope["state"]["caller"], params, body, scope)
                    if reply is not None:
                        route_path = route.route
                        scope["path_params"] = params
                        status, content, headers = reply
                        status_holder[0] = status
                        await _send_json(send, status, content, request_id, headers)
                        return
                receive = _replay(buffered, receive)
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            if route_path is None:
                route_path = getattr(scope.get("route"), "path", None) or "unmatched"
            if self.telemetry is not None:
                self.telemetry.observe_request(
                    scope["method"], route_path, status_holder[0], elapsed
                )
                # only authenticated requests leave spans: an anonymous client cannot grow them
                authenticated = "caller" in scope["state"] or self.keys is None
                if authenticated and (parent is not None or span.attributes.get("keep")):
                    span.name = f"{scope['method']} {route_path}"
                    span.attributes.update(status=status_holder[0])
                    self.telemetry.tracer.record(
                        span, status="error" if status_holder[0] >= 500 else "ok"
                    )
            current_span.reset(span_token)
            if self.access_log:
                # a console's periodic reads (X-OpsCore-Poll) go in at DEBUG: a run's log shows
                # what happened to it, not that someone was watching it every two seconds
                polled = (
                    status_holder[0] < 400
                    and scope["method"] == "GET"
                    and _header(scope, b"x-opscore-poll") is not None
                )
                access_logger.log(
                    logging.DEBUG if polled else logging.INFO,
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

    def _fast_route(self, scope: Scope) -> tuple[FastRoute, dict[str, str]] | None:
        for route in self.fast_routes:
            params = route.match(scope["method"], scope["path"])
            if params is not None:
                return route, params
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> list[Message] | None:
        """Read the whole body up front (it is bounded in size and time); None when it is too
        large. What is left of a too-large body is read and dropped (bounded too), so the
        client, still sending, sees the 413 instead of a reset connection. A body that
        does not arrive within ``body_timeout`` seconds raises BodyTimeoutError."""
        declared: int | None = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if not value.isdigit():
                    return None  # h11 refuses these first; never parse one loosely
                declared = int(value)
        if declared is not None and declared > self.max_body_bytes:
            if declared <= DRAIN_BYTES:
                await _drain(receive, 0)
            return None
        messages: list[Message] = []
        size = 0
        deadline = time.monotonic() + self.body_timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BodyTimeoutError
            try:
                message = await receive_within(receive, left)
            except TimeoutError:
                raise BodyTimeoutError from None
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                if message.get("more_body", False):
                    await _drain(receive, size)
                return None
            if not message.get("more_body", False):
                return messages


class BodyTimeoutError(Exception):
    """The request body did not arrive within the gateway's body_timeout."""


async def _drain(receive: Receive, already: int) -> None:
    """Read and drop the rest of a body, up to DRAIN_BYTES in all and DRAIN_SECONDS (nginx's
    lingering close): past either, the connection is let go."""
    deadline = time.monotonic() + DRAIN_SECONDS
    drained = already
    while drained <= DRAIN_BYTES:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        try:
            message = await receive_within(receive, left)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


_OPEN_PATHS = ("/v1/opscore/internal/agent/notify",)
# A2A agents' push notifications: each carries its task's token instead (routes/a2a.py)
_OPEN_PREFIX = "/v1/opscore/internal/a2a/"
_ID_PARAMS = ("agentId", "sessionId", "taskId", "workflowId")


def _ids(path_params: dict[str, str] | None) -> dict[str, str]:
    """agentId/sessionId/taskId from the route, so access lines filter like operation lines."""
    if not path_params:
        return {}
    return {k: v for k, v in path_params.items() if k in _ID_PARAMS}


def _needs_key(path: str) -> bool:
    if path.startswith(_OPEN_PREFIX):
        return False
    return (path.startswith("/v1/") and path not in _OPEN_PATHS) or path == "/metrics"


def _new_request_id() -> str:
    """32 hex digits, like a uuid4's, without its cost: a request id is a label, not a secret."""
    return f"{random.getrandbits(128):032x}"


def _incoming_request_id(scope: Scope) -> str | None:
    candidate = _header(scope, b"x-request-id")
    return candidate if candidate and _VALID_REQUEST_ID.match(candidate) else None
