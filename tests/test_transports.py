"""The HTTP hand-over: every way it can fail becomes a DispatchError (retried by the engine),
never an unexpected exception, and what it sends is AgentKit's message."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from opscore.models import Agent
from opscore.transports import DispatchError, HttpTransport

from .storage_servers import free_port
from .test_storage_contract import agent as registered
from .test_storage_contract import task


def agent(endpoint: str) -> Agent:
    return registered("a1", contact_endpoint=endpoint)


TASK = task("t1")


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://127.0.0.1:{closed}/agent",  # nothing listens
        "http://",  # no host
        "http://bad host/agent",
        "http://127.0.0.1:99999/agent",  # no such port
    ],
)
async def test_failed_hand_overs_are_dispatch_errors(endpoint: str) -> None:
    transport = HttpTransport(None, timeout=2)
    try:
        with pytest.raises(DispatchError, match=r"POST .* failed"):
            await transport.send(agent(endpoint.format(closed=free_port())), TASK, {})
    finally:
        await transport.close()


async def test_an_agent_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never reads or answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        transport = HttpTransport(None, timeout=0.3)
        try:
            with pytest.raises(DispatchError, match="Timeout"):
                await transport.send(agent(f"http://127.0.0.1:{port}/agent"), TASK, {})
        finally:
            await transport.close()


async def test_the_message_and_headers_reach_the_agent_and_non_2xx_is_refused() -> None:
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        received.append(head + await reader.readexactly(length))
        status = b"202 Accepted" if len(received) == 1 else b"503 Service Unavailable"
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = HttpTransport(None, timeout=2)
    try:
        target = agent(f"http://127.0.0.1:{port}/agent")
        await transport.send(
            target, TASK, {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
        )
        with pytest.raises(DispatchError, match="answered 503"):
            await transport.send(target, TASK, {})
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()
    head, _, body = received[0].partition(b"\r\n\r\n")
    assert b"POST /agent HTTP/1.1" in head and b"traceparent: 00-" in head.lower()
    assert b"content-type: application/json" in head.lower()
    message = json.loads(body)
    assert message["messageType"] == "workflow_task" and message["opscore_task_id"] == "t1"
