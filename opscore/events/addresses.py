"""Where events may go: not to Ops-Core's own network unless a setting allows it.

A subscription's URL is a request Ops-Core makes on someone's behalf (server-side request
forgery): without this check, anyone allowed to subscribe could make Ops-Core call its own
metadata service (169.254.169.254), a database on localhost or an internal admin page.
The host is checked when the subscription is stored and again before every delivery (its DNS
may have changed since); redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from ..errors import UnprocessableError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefusedError(UnprocessableError):
    code = "EVENT_TARGET_REFUSED"


def is_internal(address: IPAddress) -> bool:
    """Loopback, link-local, private, shared, reserved, multicast or unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_link_local
        or address.is_private
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or not address.is_global
    )


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse (422 EVENT_TARGET_REFUSED) a URL whose host is, or resolves to, an internal
    address, unless ``allow_private``; and one whose host does not resolve at all."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise TargetRefusedError(f"Event URL '{url}' must be http(s)://host[:port]/path")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        addresses = await _resolve(host, port)
    internal = sorted({str(a) for a in addresses if is_internal(a)})
    if internal:
        raise TargetRefusedError(
            f"Event URL host '{host}' is an internal address ({', '.join(internal)}); set "
            "OPSCORE_EVENTS_ALLOW_PRIVATE_TARGETS=true to send events inside your network"
        )


async def _resolve(host: str, port: int) -> list[IPAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=5
        )
    except (OSError, TimeoutError) as exc:
        raise TargetRefusedError(f"Event URL host '{host}' does not resolve: {exc}") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
