"""Annotated dependency aliases for the routes, in one place."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ..container import Services
from ..errors import UnprocessableError
from ..security.keys import Caller

_bearer = HTTPBearer(auto_error=False, description="The API key as a Bearer token (AgentKit).")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(
    request: Request,
    services: ServicesDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    x_api_key: Annotated[str | None, Security(_api_key)],
) -> Caller:
    """Resolve the caller from its key; every router is mounted with this dependency.

    Dependencies here are all async: a sync one would cost a thread-pool hop per request.

    The middleware has usually resolved it already (before reading the body)."""
    caller = getattr(request.state, "caller", None)
    if caller is None:  # the middleware normally did this, rate limit included
        caller = services.keys.resolve(bearer.credentials if bearer is not None else x_api_key)
        services.rate_limiter.check(caller)
        request.state.caller = caller
    return caller


CallerDep = Annotated[Caller, Depends(authenticate)]


def require(scope: str) -> Any:
    """A dependency that admits callers whose role grants ``scope``."""

    async def check(caller: CallerDep) -> Caller:
        caller.require(scope)
        return caller

    return Depends(check)


@dataclass(frozen=True)
class Paging:
    offset: int
    limit: int


async def paging(
    services: ServicesDep,
    offset: Annotated[
        int, Query(ge=0, le=10_000_000, description="Items to skip.", examples=[0])
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Page size.", examples=[50])] = 50,
) -> Paging:
    if limit > services.settings.max_page_size:
        raise UnprocessableError(
            f"limit must be at most {services.settings.max_page_size}", code="PAGE_TOO_LARGE"
        )
    return Paging(offset, limit)


PagingDep = Annotated[Paging, Depends(paging)]
