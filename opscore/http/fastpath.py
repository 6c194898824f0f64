"""Calls the gateway answers itself, without FastAPI's routing: the two every workflow makes.

A three-step run on a fleet of AgentKit agents costs one trigger and six state reports. Through
FastAPI, each went past its error, telemetry and body-limit layers, a match against every route
and a dozen dependency solves (the API key's schemes, the role check, the services), which cost
more than the work behind the call: a trigger took about 610 us of CPU that way, 370 through
the gateway's fast route, and starting the run alone 260 (``python -m bench.trigger``). The
gateway has already authenticated the caller, applied the rate limit and read the bounded body,
so a fast route only parses the body and calls the service. Its FastAPI route stays: it
documents the call in OpenAPI, and it answers whatever the fast route hands back (``answer``
returning None), so anything unusual is answered exactly as documented.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from starlette.types import Scope

from ..observe.logs import request_id_var
from ..security.keys import Caller
from .envelope import ErrorReply

if TYPE_CHECKING:
    from ..container import Services

Reply = tuple[int, bytes, dict[str, str]]  # status, JSON body, extra headers


class FastRoute(Protocol):
    """One documented route the gateway may answer itself."""

    route: str  # the route's path template, as metrics, spans and access lines name it

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters when this request is a call of this route, else None."""

    async def answer(
        self, caller: Caller, params: dict[str, str], body: bytes, scope: Scope
    ) -> Reply | None:
        """The reply; None hands the request to FastAPI's route, which answers it as documented.
        Never raises."""


class PostRoute:
    """A fast route for ``POST`` on a path with one parameter: a subclass names its ``route``,
    its ``path`` (a regex whose group 1 is the parameter) and ``param``, and answers."""

    route: str
    path: re.Pattern[str]
    param: str

    def __init__(self, services: Services) -> None:
        self.services = services

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != "POST":
            return None
        found = self.path.match(path)
        return {self.param: found.group(1)} if found else None


def error_reply(reply: ErrorReply) -> Reply:
    """An error in the one envelope, with this request's id."""
    return reply.status, reply.body(request_id_var.get()), reply.headers


def header_values(scope: Scope, wanted: bytes) -> list[bytes]:
    """Every value a request header was sent with, in order (one per line it came on)."""
    return [value for name, value in scope.get("headers", ()) if name == wanted]


def header(scope: Scope, wanted: bytes) -> str | None:
    """A request header's value as ASCII; None when it is absent or not ASCII."""
    for name, value in scope.get("headers", ()):
        if name == wanted:
            try:
                return str(value.decode("ascii"))
            except UnicodeDecodeError:
                return None
    return None
