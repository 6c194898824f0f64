"""The HTTP hand-over: every way it can fail becomes a DispatchError (retried by the engine),
never an unexpected exception; what it sends is exactly the message AgentKit forwards; and the
agent's answer becomes the outcome."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest

from opscore.dispatch.transports import (
    MAX_ANSWER_BYTES,
    DispatchError,
    HttpTransport,
    read_answer,
    task_message,
)
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
    transport = HttpTransport(None, connect_timeout=2)
    try:
        with pytest.raises(DispatchError, match=r"POST .* failed"):
            await transport.send(agent(endpoint.format(closed=free_port())), TASK, {}, timeout=2)
    finally:
        await transport.close()


async def test_an_agent_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never reads or answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        transport = HttpTransport(None, connect_timeout=0.3)
        try:
            with pytest.raises(DispatchError, match=r"no answer within 0\.3s") as caught:
                await transport.send(agent(f"http://127.0.0.1:{port}/agent"), TASK, {}, timeout=0.3)
            assert caught.value.timed_out and not caught.value.unreachable
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


async def test_the_message_and_headers_reach_the_agent_and_non_2xx_fails_the_attempt() -> None:
    fake = RawAgent(
        [b"202 Accepted", b"503 Service Unavailable"], close_after_answer=False, body=EMPTY
    )
    transport = HttpTransport(None, connect_timeout=2)
    try:
        async with fake as url:
            accepted = await transport.send(
                agent(url),
                TASK,
                {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"},
                timeout=2,
            )
            refused = await transport.send(agent(url), TASK, {}, timeout=2)
    finally:
        await transport.close()
    assert accepted.outcome == "accepted"
    assert refused.outcome == "failed" and "answered 503" in (refused.error or "")
    assert fake.connections == 1  # one kept-alive connection for both
    head, _, body = fake.received[0].partition(b"\r\n\r\n")
    assert b"POST /agent HTTP/1.1" in head and b"traceparent: 00-" in head.lower()
    assert b"content-type: application/json" in head.lower()
    message = json.loads(body)
    assert message["messageType"] == "workflow_task" and message["opscore_task_id"] == "t1"
    # exactly the fields AgentKit forwards to an agent (MessagePayload.model_dump(mode="json"))
    assert set(message) == {
        "senderId",
        "timestamp",
        "messageType",
        "payload",
        "sessionContext",
        "task_name",
        "opscore_session_id",
        "opscore_task_id",
    }
    assert message["sessionContext"] == {"sessionId": TASK.session_id, "priorMessages": []}


async def test_a_connection_the_agent_closed_is_replaced_without_losing_or_repeating() -> None:
    fake = RawAgent([b"202 Accepted"], close_after_answer=True, body=EMPTY)
    transport = HttpTransport(None, connect_timeout=2)
    try:
        async with fake as url:
            for _ in range(5):  # each reuses a connection the agent has just closed
                await transport.send(agent(url), TASK, {}, timeout=2)
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
async def test_chunked_or_long_answers_are_read_and_the_connection_reused(answer: bytes) -> None:
    fake = RawAgent([b"202 Accepted"], close_after_answer=False, body=answer)
    transport = HttpTransport(None, connect_timeout=2)
    try:
        async with fake as url:
            for _ in range(3):
                got = await transport.send(agent(url), TASK, {}, timeout=2)
                assert got.outcome == "accepted"  # not JSON: the agent's reports decide
    finally:
        await transport.close()
    assert len(fake.received) == 3 and fake.connections == 1


async def test_an_answer_past_the_size_limit_fails_the_attempt_unread() -> None:
    size = MAX_ANSWER_BYTES + 1
    fake = RawAgent(
        [b"200 OK"],
        close_after_answer=False,
        body=b"content-length: %d\r\n\r\n" % size + b"x" * size,
    )
    transport = HttpTransport(None, connect_timeout=2)
    try:
        async with fake as url:
            got = await transport.send(agent(url), TASK, {}, timeout=5)
    finally:
        await transport.close()
    assert got.outcome == "failed" and "larger than" in (got.error or "")


async def test_an_agent_working_inside_the_request_longer_than_the_connect_timeout_is_awaited() -> (
    None
):
    """AgentKit's example agent answers only when the work is done: the hand-over waits up
    to the task's timeout, not OPSCORE_DISPATCH_TIMEOUT."""

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
        await asyncio.sleep(0.6)  # three times the connect timeout below
        body = b'{"status": "completed", "result": "done"}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(slow, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/agent"
    transport = HttpTransport(None, connect_timeout=0.2)
    try:
        got = await transport.send(agent(url), TASK, {}, timeout=10)
    finally:
        await transport.close()
        server.close()
        await server.wait_closed()
    assert got.outcome == "completed" and got.result == "done"


@pytest.mark.parametrize(
    "status,body,outcome,result,error",
    [
        (200, {"status": "completed", "result": "summary"}, "completed", "summary", None),
        (200, {"status": "completed", "result": {"n": 1}}, "completed", {"n": 1}, None),
        (200, {"status": "completed"}, "completed", None, None),
        (202, {"status": "accepted"}, "accepted", None, None),
        (200, {"status": "received"}, "accepted", None, None),
        (200, None, "accepted", None, None),
        (200, {"status": "ignored", "reason": "unknown type"}, "failed", None, "unknown type"),
        (200, {"status": "failed", "error": "no key"}, "failed", None, "no key"),
        (
            500,
            {"detail": {"error_code": "PROCESSING_ERROR", "message": "LLM down"}},
            "failed",
            None,
            "PROCESSING_ERROR: LLM down",
        ),
        (404, {"detail": "Not Found"}, "failed", None, "answered 404: Not Found"),
    ],
)
def test_the_answer_of_a_hand_over_is_its_outcome(
    status: int, body: object, outcome: str, result: object, error: str | None
) -> None:
    raw = json.dumps(body).encode() if body is not None else b""
    got = read_answer(status, raw)
    assert (got.outcome, got.result) == (outcome, result)
    if error is not None:
        assert got.error is not None and error in got.error


def test_a_non_json_answer_is_an_acknowledgement() -> None:
    assert read_answer(200, b"OK").outcome == "accepted"
    assert read_answer(503, b"<html>busy</html>").outcome == "failed"


def test_the_message_carries_the_resolved_parameters() -> None:
    resolved = TASK.model_copy(update={"resolved_parameters": {"x": 1}})
    assert task_message(resolved)["payload"] == {"task_name": TASK.step_id, "parameters": {"x": 1}}
