"""Exceptions to the one error envelope, shared by FastAPI's handlers and the raw-ASGI paths.

Every failure a client sees has the shape ``{"error": {code, message, details}, "detail",
"requestId"}``; keeping the mapping here means the middleware's early answers (401, 413, 429),
the state-report fast path and FastAPI's exception handlers cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..errors import OpsCoreError, RateLimitedError

logger = logging.getLogger("opscore.api")


@dataclass(frozen=True)
class ErrorReply:
    status: int
    code: str
    message: str
    details: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    def content(self, request_id: str | None) -> dict[str, Any]:
        return error_content(self.code, self.message, self.details, request_id)

    def body(self, request_id: str | None) -> bytes:
        return orjson.dumps(self.content(request_id))


def error_content(
    code: str, message: str, details: Any = None, request_id: str | None = None
) -> dict[str, Any]:
    """The one error envelope; ``detail`` repeats the message for AgentKit's SDK."""
    return {
        "error": {"code": code, "message": message, "details": details},
        "detail": message,
        "requestId": request_id,
    }


def from_opscore_error(exc: OpsCoreError) -> ErrorReply:
    if exc.status_code >= 500:
        logger.error("request failed: %s", exc.message, extra={"code": exc.code})
    headers: dict[str, str] = {}
    if isinstance(exc, RateLimitedError):
        headers["Retry-After"] = str(max(int(exc.retry_after), 1))
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return ErrorReply(exc.status_code, exc.code, exc.message, exc.details, headers)


def from_validation_errors(errors: Sequence[Any]) -> ErrorReply:
    """pydantic/FastAPI errors (``loc`` starting with body/path/query) as 400 or 422."""
    if any(e.get("type") == "json_invalid" for e in errors):
        return ErrorReply(400, "INVALID_JSON", "Request body is not valid JSON")
    details = [
        {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
        for e in errors
    ]
    first = details[0] if details else {"loc": [], "msg": "invalid"}
    where = ".".join(str(p) for p in first["loc"][1:] or first["loc"])
    what = first["msg"]
    if first.get("type") == "extra_forbidden" and first["loc"]:
        what = f"unknown field '{first['loc'][-1]}'"  # a misspelt key must not pass unnoticed
    message = f"Invalid request: {where}: {what}" if where else f"Invalid request: {what}"
    return ErrorReply(422, "VALIDATION_ERROR", message, details)


UNEXPECTED = ErrorReply(500, "INTERNAL_ERROR", "Internal error; see the server log by requestId")
