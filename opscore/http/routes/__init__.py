"""Thin HTTP layer: parse, call one service function, return. One module per resource."""

from ...models import ErrorResponse

ERRORS = {
    400: {"model": ErrorResponse, "description": "Malformed request (e.g. invalid JSON)"},
    401: {"model": ErrorResponse, "description": "Missing or invalid API key"},
    403: {"model": ErrorResponse, "description": "The key's role may not do this"},
    422: {"model": ErrorResponse, "description": "Invalid input"},
    413: {"model": ErrorResponse, "description": "Request body too large"},
    429: {"model": ErrorResponse, "description": "Rate limit exceeded"},
    503: {"model": ErrorResponse, "description": "Storage unavailable"},
}
NOT_FOUND = {404: {"model": ErrorResponse, "description": "Not found"}}
CONFLICT = {409: {"model": ErrorResponse, "description": "Conflict"}}
