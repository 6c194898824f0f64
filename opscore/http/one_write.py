"""A response's head and body in one write: one ``send`` and one TCP segment, not two.

uvicorn writes a response's status line and headers as soon as the application starts the
response, and the body when it comes: two ``send`` calls, two segments (asyncio sets
``TCP_NODELAY``), and the client's process woken for the head and again for the body. aiohttp
does the opposite on its side (it holds the headers until the first body write). Here the
transport holds a small write until the next one, which then goes out with it; a write that
nothing follows goes out at the loop's next turn. An agent's state report answered through
the gateway cost 2.5-4% less CPU that way at 8 connections (bench/README.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

HOLD_AT_MOST = 16 * 1024  # bytes: a response's head; a larger write goes out at once
JOIN_AT_MOST = 64 * 1024  # bytes: a larger body is sent after the held head, not copied onto it


class OneWriteTransport(asyncio.Transport):
    """Wraps the connection's transport; everything but writing passes through."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_due = False

    # --- writing ----------------------------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= JOIN_AT_MOST:
                self._transport.write(held + bytes(data))
                return
            self._transport.write(held)
        elif len(data) <= HOLD_AT_MOST:
            self._held = bytes(data)
            if not self._flush_due:
                self._flush_due = True
                self._loop.call_soon(self._flush_at_turn)
            return
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def flush(self) -> None:
        """Send what is held now."""
        held, self._held = self._held, None
        if held is not None:
            self._transport.write(held)

    def _flush_at_turn(self) -> None:
        self._flush_due = False
        self.flush()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    # --- closing ----------------------------------------------------------------------------
    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    # --- everything else, as the connection's own transport -------------------------------
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()
