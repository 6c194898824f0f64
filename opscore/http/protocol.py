"""The HTTP/1 protocol `opscore serve` runs: uvicorn's httptools protocol, with a deadline for a
request's headers, and each response's head sent with its body (``one_write``).

A client that sends its headers a byte at a time holds a connection for as long as it likes:
uvicorn bounds an idle keep-alive connection, not one that trickles, and the application only
sees a request once its headers are complete. Here the headers of each request must arrive
within ``OPSCORE_HEADER_TIMEOUT_SECONDS`` of its first byte (or of the connection): past that
the client gets ``408`` in the one error shape and the connection is closed. Bodies are bounded
by the gateway (``OPSCORE_BODY_TIMEOUT_SECONDS``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .one_write import OneWriteTransport


class BoundedHeadersProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with headers bounded to ``header_timeout`` seconds and
    each response's head written with its body. Importable by name, so that the processes of
    ``OPSCORE_PROCESSES`` (spawned by uvicorn, which passes the protocol by reference) run it
    too: each sets ``header_timeout`` from its settings."""

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None
    # a request has begun whose headers are not complete yet
    _in_headers = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(OneWriteTransport(transport, self.loop))
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        """The parser calls back for what ``data`` holds. A request begun in it and
        whose headers are not all there yet gets its deadline once that is known. Most
        requests arrive whole, in one read, and then need no timer at all."""
        super().data_received(data)
        waiting = self._in_headers and self._header_timer is None
        if waiting and not self.transport.is_closing():
            self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._stop_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        message = f"Request headers did not arrive within {self.header_timeout:g}s"
        body: dict[str, Any] = {
            "error": {"code": "REQUEST_TIMEOUT", "message": message, "details": None},
            "detail": message,
            "requestId": None,
        }
        payload = json.dumps(body).encode()
        self.transport.write(
            b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload
        )
        self.transport.close()


def bounded_headers_protocol(header_timeout: float) -> type[HttpToolsProtocol]:
    """``BoundedHeadersProtocol`` with headers bounded to ``header_timeout`` seconds."""
    return type(
        "BoundedHeadersProtocol", (BoundedHeadersProtocol,), {"header_timeout": header_timeout}
    )
