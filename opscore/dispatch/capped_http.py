"""An httpx transport that reads no more of an answer than a limit.

a2a-sdk reads an A2A agent's answer whole (a task with every artifact) before it parses it,
so an agent that answers with gigabytes, by mistake or on purpose, would have this process
hold them all. Behind this transport an answer that says it is larger than the limit is not
read at all, and one that grows past it while it is read stops there: both raise
``AnswerTooLargeError``, a read error to whoever called httpx. The push transport stops at the
same size (``transports.MAX_ANSWER_BYTES``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx


class AnswerTooLargeError(httpx.ReadError):
    """The answer is larger than the transport reads."""


class CappedTransport(httpx.AsyncBaseTransport):
    """``inner`` (a plain ``httpx.AsyncHTTPTransport`` by default), reading at most ``limit``
    bytes of each answer's body."""

    def __init__(self, limit: int, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.limit = limit
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            await response.aclose()
            raise AnswerTooLargeError(self._message(), request=request)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Capped(response, self.limit, self._message(), request),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()

    def _message(self) -> str:
        return f"the answer is larger than {self.limit} bytes"


class _Capped(httpx.AsyncByteStream):
    def __init__(
        self, response: httpx.Response, limit: int, message: str, request: httpx.Request
    ) -> None:
        self._response = response
        self._limit = limit
        self._message = message
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        read = 0
        stream = self._response.stream
        assert isinstance(stream, httpx.AsyncByteStream)  # from an async transport
        async for chunk in stream:
            read += len(chunk)
            if read > self._limit:  # chunked, or a length that lied: stop, drop the rest
                await self._response.aclose()
                raise AnswerTooLargeError(self._message, request=self._request)
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()
