"""What an A2A agent answers is read up to a limit (dispatch/capped_http.py); the end-to-end
case, a 5 MiB artifact from a2a-sdk's own server, is in test_a2a.py."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from opscore.dispatch.capped_http import AnswerTooLargeError, CappedTransport

LIMIT = 1000


async def _chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * size


def _client(answer: httpx.Response, read: list[int]) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        read.append(1)
        return answer

    return httpx.AsyncClient(transport=CappedTransport(LIMIT, httpx.MockTransport(handler)))


async def test_an_answer_within_the_limit_is_read_as_it_came() -> None:
    async with _client(httpx.Response(200, json={"ok": True}), []) as client:
        response = await client.get("http://agent.test/")
    assert response.status_code == 200 and response.json() == {"ok": True}


async def test_an_answer_that_says_it_is_too_large_is_not_read() -> None:
    answer = httpx.Response(200, content=b"x" * (LIMIT + 1))
    async with _client(answer, []) as client:
        with pytest.raises(AnswerTooLargeError, match=f"larger than {LIMIT} bytes"):
            await client.get("http://agent.test/")


async def test_a_chunked_answer_stops_where_it_passes_the_limit() -> None:
    answer = httpx.Response(200, content=_chunks(100, 100))  # 10,000 bytes, no length
    assert "content-length" not in answer.headers
    async with _client(answer, []) as client:
        with pytest.raises(AnswerTooLargeError):
            await client.get("http://agent.test/")


async def test_a_chunked_answer_up_to_the_limit_is_whole() -> None:
    answer = httpx.Response(200, content=_chunks(10, 100))  # exactly the limit
    async with _client(answer, []) as client:
        response = await client.get("http://agent.test/")
    assert response.content == b"x" * LIMIT


async def test_the_error_is_a_read_error_to_httpx_callers() -> None:
    """a2a-sdk turns httpx's request errors into its own client error, which the A2A client
    then reports as the answer being too large."""
    assert issubclass(AnswerTooLargeError, httpx.RequestError)
