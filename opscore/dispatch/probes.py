"""Probes: is anything answering at an agent's contactEndpoint?

A probe is ``GET {contactEndpoint}`` over a fresh connection. Any HTTP answer, whatever its
status, means the agent's server is up, so the probe reads the status line and closes: nothing
more is needed, and a fleet of 10,000 silent agents is probed for a few percent of one core (an
HTTP client library costs about 60% more per probe here; ``python -m bench.probes``). A refused
or reset connection, or no status line within the timeout, means it is not.

AgentKit's example agent serves only ``POST /``, so a ``GET`` is answered 405 by its framework
and never reaches the handler: a probe can never look like a task.
"""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import urlsplit

from .transports import USER_AGENT


class Prober:
    """Probes agents' endpoints; one TLS context for every ``https://`` endpoint."""

    def __init__(self, *, timeout: float) -> None:
        self.timeout = timeout
        self._tls: ssl.SSLContext | None = None

    async def reachable(self, url: str) -> bool:
        """True when the URL's server gave any HTTP answer within the timeout."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._ask(url)
        except (OSError, TimeoutError, ValueError, ssl.SSLError, asyncio.IncompleteReadError):
            return False

    async def _ask(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        secure = parts.scheme == "https"
        port = parts.port or (443 if secure else 80)
        if secure and self._tls is None:
            self._tls = ssl.create_default_context()
        reader, writer = await asyncio.open_connection(
            parts.hostname, port, ssl=self._tls if secure else None
        )
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host = parts.netloc.rpartition("@")[2]
            writer.write(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
                "X-OpsCore-Probe: 1\r\nAccept: */*\r\nConnection: close\r\n\r\n".encode()
            )
            await writer.drain()
            status_line = await reader.readline()
            return status_line.startswith(b"HTTP/")
        finally:
            writer.close()

    async def close(self) -> None:
        """Nothing is pooled: probes use a connection each."""
        return None
