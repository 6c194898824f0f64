"""The SDK's errors: one class per kind of failure, each with the service's status, stable code,
message and request id."""

from __future__ import annotations

from typing import Any

import httpx


class APIError(Exception):
    """Base of every SDK error: carries the status, stable code, message and request id."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.details = details

    def __str__(self) -> str:
        if self.status_code:
            return f"{self.status_code} {self.code}: {self.message}"
        return f"{self.code}: {self.message}" if self.code else self.message


class APIConnectionError(APIError):
    """The server could not be reached."""


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class APIStatusError(APIError):
    """The server answered with an error status."""


class BadRequestError(APIStatusError): ...


class AuthenticationError(APIStatusError): ...


class PermissionDeniedError(APIStatusError): ...


class NotFoundError(APIStatusError): ...


class ConflictError(APIStatusError): ...


class UnprocessableEntityError(APIStatusError): ...


class RateLimitError(APIStatusError): ...


class InternalServerError(APIStatusError): ...


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: BadRequestError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _error_from(response: httpx.Response) -> APIStatusError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = error.get("message") or (body.get("detail") if isinstance(body, dict) else None)
    cls = _STATUS_ERRORS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    return cls(
        str(message or response.reason_phrase or "request failed"),
        status_code=response.status_code,
        code=error.get("code"),
        request_id=(body.get("requestId") if isinstance(body, dict) else None)
        or response.headers.get("x-request-id"),
        details=error.get("details"),
    )
