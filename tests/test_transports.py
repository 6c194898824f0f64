"""The HTTP hand-over: every way it can fail becomes a DispatchError (retried by the engine),
never an unexpected exception, and what it sends is AgentKit's message."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from opscore.dispatch.transports import DispatchError, HttpTransport
from opscore.models import Agent

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


class RawAgent:
    """An agent endpoint on a bare asyncio server: records each request, answers from a script.

    ``close_after_answer`` closes the connection after every answer without saying so, as a
    server whose keep-alive ran out does; ``body`` may be long or chunked.
    """

    def __init__(
        self, statuses: list[bytes], *, close_after_answer: bool, body: bytes = b""
    ) -> None:
        self.statuses = statuses
        self.close_after_answer = close_after_answer
        self.body = body
        self.received: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                self.received.append(head + await reader.readexactly(length))
                status = self.statuses[min(len(self.received), len(self.statuses)) - 1]
                writer.write(b"HTTP/1.1 " + status + b"\r\n" + self.body)
                await writer.drain()
                if self.close_after_answer:
                    break
        except asyncio.IncompleteReadError:
            pass  # the client closed the connection
        writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/agent"

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()


EMPTY = b"content-length: 0\r\n\r\n"


async def test_the_message_and_headers_reach_the_agent_and_non_2xx_is_refused() -> None:
    fake = RawAgent(
        [b"202 Accepted", b"503 Service Unavailable"], close_after_answer=False, body=EMPTY
    )
    transport = HttpTransport(None, timeout=2)
    try:
        async with fake as url:
            await transport.send(
                agent(url), TASK, {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
            )
            with pytest.raises(DispatchError, match="answered 503"):
                await transport.send(agent(url), TASK, {})
    finally:
        await transport.close()
    assert fake.connections == 1  # one kept-alive connection for both
    head, _, body = fake.received[0].partition(b"\r\n\r\n")
    assert b"POST /agent HTTP/1.1" in head and b"traceparent: 00-" in head.lower()
    assert b"content-type: application/json" in head.lower()
    message = json.loads(body)
    assert message["messageType"] == "workflow_task" and message["opscore_task_id"] == "t1"


async def test_a_connection_the_agent_closed_is_replaced_without_losing_or_repeating() -> None:
    fake = RawAgent([b"202 Accepted"], close_after_answer=True, body=EMPTY)
    transport = HttpTransport(None, timeout=2)
    try:
        async with fake as url:
            for _ in range(5):  # each reuses a connection the agent has just closed
                await transport.send(agent(url), TASK, {})
    finally:
        await transport.close()
    assert len(fake.received) == 5 and fake.connections == 5


@pytest.mark.parametrize(
    "answer",
    [
        b"transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"content-length: 100000\r\n\r\n" + b"x" * 100_000,
    ],
    ids=["chunked", "long"],
)
async def test_open_ended_or_long_answers_are_not_read_and_the_next_hand_over_works(
    answer: bytes,
) -> None:
    fake = RawAgent([b"202 Accepted"], close_after_answer=False, body=answer)
    transport = HttpTransport(None, timeout=2)
    try:
        async with fake as url:
            for _ in range(3):
                await transport.send(agent(url), TASK, {})
    finally:
        await transport.close()
    assert len(fake.received) == 3
