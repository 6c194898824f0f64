"""Domain errors. Services raise these; ``api.py`` maps them to HTTP in one place.

Hierarchy::

    OpsCoreError (500, INTERNAL_ERROR)
    +-- ConfigError                  start-up refused; never reaches HTTP
    +-- BadRequestError (400)        BAD_REQUEST, INVALID_JSON, INVALID_TEMPLATE ...
    +-- AuthenticationError (401)    MISSING_API_KEY, INVALID_API_KEY, INVALID_SIGNATURE ...
    +-- PermissionDeniedError (403)  FORBIDDEN, AGENT_NOT_ALLOWED
    +-- NotFoundError (404)          AGENT_NOT_FOUND, SESSION_NOT_FOUND, ...
    +-- ConflictError (409)          AGENT_EXISTS, STATE_OUT_OF_ORDER, ILLEGAL_TRANSITION ...
    +-- GoneError (410)              SESSION_PRUNED
    +-- PayloadTooLargeError (413)   PAYLOAD_TOO_LARGE
    +-- UnprocessableError (422)     VALIDATION_ERROR, UNKNOWN_STATE, AGENT_ID_MISMATCH ...
    +-- RateLimitedError (429)       RATE_LIMITED
    +-- StorageError (503)           STORAGE_UNAVAILABLE
"""

from __future__ import annotations

from typing import Any


class OpsCoreError(Exception):
    """Base of every error Ops-Core raises on purpose."""

    status_code = 500
    code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class ConfigError(OpsCoreError):
    code = "CONFIG_ERROR"


class BadRequestError(OpsCoreError):
    status_code = 400
    code = "BAD_REQUEST"


class AuthenticationError(OpsCoreError):
    status_code = 401
    code = "INVALID_API_KEY"


class PermissionDeniedError(OpsCoreError):
    status_code = 403
    code = "FORBIDDEN"


class NotFoundError(OpsCoreError):
    status_code = 404
    code = "NOT_FOUND"


class ConflictError(OpsCoreError):
    status_code = 409
    code = "CONFLICT"


class NoFreeSlotError(ConflictError):
    """An agent had no free slot for a task (``Storage.update_task(claim_slot_of=...)``):
    the dispatcher tries another agent; never an answer to a request."""

    code = "NO_FREE_SLOT"


class GoneError(OpsCoreError):
    """What was asked for existed, and retention has removed it."""

    status_code = 410
    code = "GONE"


class PayloadTooLargeError(OpsCoreError):
    status_code = 413
    code = "PAYLOAD_TOO_LARGE"


class UnprocessableError(OpsCoreError):
    status_code = 422
    code = "VALIDATION_ERROR"


class RateLimitedError(OpsCoreError):
    status_code = 429
    code = "RATE_LIMITED"

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class StorageError(OpsCoreError):
    status_code = 503
    code = "STORAGE_UNAVAILABLE"
