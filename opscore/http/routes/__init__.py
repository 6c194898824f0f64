"""Thin HTTP layer: parse, call one service function, return. One module per resource."""

from typing import Any

from ...models import ErrorResponse

# FastAPI's own type for ``responses=``; the dicts are merged with ``{**ERRORS, **NOT_FOUND}``.
Responses = dict[int | str, dict[str, Any]]

ERRORS: Responses = {
    400: {"model": ErrorResponse, "description": "Malformed request (e.g. invalid JSON)"},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
    403: {"model": ErrorResponse, "description": "The key's role may not do this"},
    422: {"model": ErrorResponse, "description": "Invalid input"},
    413: {"model": ErrorResponse, "description": "Request body too large"},
    429: {"model": ErrorResponse, "description": "Rate limit exceeded"},
    503: {"model": ErrorResponse, "description": "Storage unavailable"},
}
NOT_FOUND: Responses = {404: {"model": ErrorResponse, "description": "Not found"}}
CONFLICT: Responses = {409: {"model": ErrorResponse, "description": "Conflict"}}
GONE: Responses = {410: {"model": ErrorResponse, "description": "Removed by retention"}}
