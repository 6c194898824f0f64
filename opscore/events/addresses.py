"""Where events may go: not to Ops-Core's own network unless a setting allows it.

A subscription's URL is a request Ops-Core makes on someone's behalf (server-side request
forgery): without this check, anyone allowed to subscribe could make Ops-Core call its own
metadata service (169.254.169.254), a database on localhost or an internal admin page.
The host is checked when the subscription is stored, and again on every connection a delivery
makes: ``PinnedTransport`` resolves the host itself, refuses if any address is internal, and
connects to the very addresses it checked. A name that answers a public address to the check
and an internal one a moment later (DNS rebinding) therefore never reaches the internal one.
Redirects are never followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

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
    await allowed_addresses(host, parts.port or (443 if parts.scheme == "https" else 80))


async def allowed_addresses(host: str, port: int) -> list[IPAddress]:
    """The host's addresses (a literal one, or resolved), refused (EVENT_TARGET_REFUSED) when
    any of them is internal or there are none."""
    addresses = await _resolve(host, port)
    internal = sorted({str(a) for a in addresses if is_internal(a)})
    if internal:
        raise TargetRefusedError(
            f"Event URL host '{host}' is an internal address ({', '.join(internal)}); set "
            "OPSCORE_EVENTS_ALLOW_PRIVATE_TARGETS=true to send events inside your network"
        )
    return addresses


async def _resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout=5
        )
    except (OSError, TimeoutError) as exc:
        raise TargetRefusedError(f"Event URL host '{host}' does not resolve: {exc}") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


class _CheckedBackend(httpcore.AsyncNetworkBackend):
    """Resolves, checks and connects in one step, to the checked addresses only."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await allowed_addresses(host, port)
        except TargetRefusedError as exc:
            raise httpcore.ConnectError(exc.message) from None
        failure: Exception | None = None
        for address in dict.fromkeys(addresses):
            try:
                return await self._inner.connect_tcp(
                    str(address),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"'{host}' has no address")

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("events are not delivered over unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, connecting through ``_CheckedBackend``. TLS still verifies the
    URL's host name: only the TCP connection goes to the checked address."""

    def __init__(self) -> None:
        super().__init__()
        # httpx has no public hook for the network backend; its pool takes one
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), network_backend=_CheckedBackend()
        )
