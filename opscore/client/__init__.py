"""Python SDK for Ops-Core: ``OpsCoreClient`` (sync) and ``AsyncOpsCoreClient`` over httpx.

Both share one request-building core (``_Endpoints``): every route is described once as a
``_Call`` and the two clients differ only in how they send it, so their method names and
arguments are identical. Results are the same pydantic models the service uses.

    from opscore.client import OpsCoreClient

    with OpsCoreClient() as ops:                      # OPSCORE_API_URL / OPSCORE_API_KEY
        ops.register_agent("summarizer", agent_id="sum-1", capabilities=["summarize"])
        run = ops.run_workflow("digest", {"topic": "agents"})
        session = ops.wait_for_session(run.session_id, timeout=60)

The async client has the same methods; await them (``await ops.get_agent("sum-1")``).
"""

from __future__ import annotations

from .clients import AsyncOpsCoreClient, OpsCoreClient
from .errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncOpsCoreClient",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InternalServerError",
    "NotFoundError",
    "OpsCoreClient",
    "PermissionDeniedError",
    "RateLimitError",
    "UnprocessableEntityError",
]
