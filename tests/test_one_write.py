"""A response's head and body leave in one write (``opscore/http/one_write.py``)."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from opscore.http import one_write
from opscore.http.one_write import OneWriteTransport

from .conftest import KEY, make_settings
from .servers import ServerThread


class Recorder(asyncio.Transport):
    """A transport that keeps what it is asked to do, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", b""))

    def abort(self) -> None:
        self.calls.append(("abort", b""))

    def get_write_buffer_size(self) -> int:
        return 0


async def _next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_a_head_and_its_body_go_out_in_one_write() -> None:
    real = Recorder()
    transport = OneWriteTransport(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    assert real.calls == []  # held for what follows
    assert transport.get_write_buffer_size() == 38
    transport.write(b"{}")
    assert real.calls == [("write", b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")]
    await _next_turn()
    assert len(real.calls) == 1  # nothing left to flush


async def test_a_write_that_nothing_follows_goes_out_at_the_next_turn() -> None:
    real = Recorder()
    transport = OneWriteTransport(real, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    await _next_turn()
    assert real.calls == [("write", b"HTTP/1.1 100 Continue\r\n\r\n")]
    # a stream's chunks: each goes out, none waits for a write that may never come
    for chunk in (b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"):
        transport.write(chunk)
    await _next_turn()
    assert b"".join(data for _, data in real.calls[1:]) == b"data: 1\n\ndata: 2\n\ndata: 3\n\n"


async def test_a_large_body_follows_the_head_without_being_copied_onto_it(monkeypatch) -> None:
    monkeypatch.setattr(one_write, "JOIN_AT_MOST", 10)
    real = Recorder()
    transport = OneWriteTransport(real, asyncio.get_running_loop())
    transport.write(b"head")
    transport.write(b"x" * 11)
    assert real.calls == [("write", b"head"), ("write", b"x" * 11)]
    transport.write(b"y" * (one_write.HOLD_AT_MOST + 1))  # too large to hold: at once
    assert real.calls[-1] == ("write", b"y" * (one_write.HOLD_AT_MOST + 1))


async def test_close_sends_what_is_held_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    real = Recorder()
    transport = OneWriteTransport(real, loop)
    transport.write(b"HTTP/1.1 408 Request Timeout\r\n\r\n")
    transport.close()
    assert real.calls == [("write", b"HTTP/1.1 408 Request Timeout\r\n\r\n"), ("close", b"")]

    real = Recorder()
    transport = OneWriteTransport(real, loop)
    transport.write(b"half a response")
    transport.abort()
    await _next_turn()
    assert real.calls == [("abort", b"")]


@pytest.fixture
def server():
    from opscore.api import create_app
    from opscore.http.protocol import bounded_headers_protocol

    with ServerThread(create_app(make_settings()), http=bounded_headers_protocol(5.0)) as running:
        yield running


def test_the_server_answers_in_one_send_per_response(server, monkeypatch) -> None:
    """Counted on the server's sockets: each answer (head and body) is one send, where
    uvicorn's own protocol makes two."""
    from asyncio import selector_events

    sends: list[bytes] = []
    real_write = selector_events._SelectorSocketTransport.write

    def counting_write(self, data):  # type: ignore[no-untyped-def]
        if self.get_extra_info("sockname")[1] == server.port:
            sends.append(bytes(data))
        return real_write(self, data)

    monkeypatch.setattr(selector_events._SelectorSocketTransport, "write", counting_write)
    headers = {"X-API-Key": KEY}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        assert client.get("/health").status_code == 200
        report = {"agentId": "a1", "state": "idle", "timestamp": "2026-12-06T12:00:00Z"}
        answered = client.post("/v1/opscore/agent/a1/state", json=report)
        assert answered.status_code == 202  # held until the agent registers: the fast route
        assert client.get("/v1/opscore/agents/nope").status_code == 404
    assert len(sends) == 3
    assert all(s.startswith(b"HTTP/1.1 ") and s.endswith((b"}", b"]")) for s in sends)


def test_a_stream_through_the_protocol_delivers_each_event_as_it_happens(server) -> None:
    """The log stream (SSE): a chunk that nothing follows goes out at the loop's next turn."""
    headers = {"X-API-Key": KEY}
    report = {"agentId": "streamer", "state": "idle", "timestamp": "2026-12-06T12:00:00Z"}
    timeout = httpx.Timeout(10, read=5)  # a chunk held for good would time the read out
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=timeout) as client,
        client.stream("GET", "/v1/opscore/logs/stream", params={"agentId": "streamer"}) as stream,
    ):
        lines = stream.iter_lines()
        assert next(lines).startswith(":")  # the stream's first comment, on its own
        client.post("/v1/opscore/agent/streamer/state", json=report)
        deadline = time.monotonic() + 10  # keepalives alone would keep the loop going
        seen = ""
        while "streamer" not in seen and time.monotonic() < deadline:
            seen = next(lines)
        assert seen.startswith("data:") and "streamer" in seen
