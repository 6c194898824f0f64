"""How a task reaches an agent: through AgentKit's run endpoint, or straight to the agent.

Both carry the same AgentKit message (DESIGN.md, contract 3); only the URL differs.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

import aiohttp
import orjson

from .. import __version__
from ..models import Agent, TaskRun

USER_AGENT = f"opscore/{__version__}"
# what aiohttp raises for a hand-over that did not happen (bad URL, refused, reset, timeout...)
HANDOVER_ERRORS = (aiohttp.ClientError, TimeoutError, ValueError)
# the connection died under a request, as a reused one does when the agent closed it meanwhile
STALE_CONNECTION_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
# an agent acknowledges a task with a small JSON; a longer answer is not read, its connection closed
MAX_ANSWER_BYTES = 64 * 1024


class DispatchError(Exception):
    """The task could not be handed over; the engine retries it."""


def task_message(task: TaskRun) -> dict[str, Any]:
    """The AgentKit ``workflow_task`` message for one task attempt."""
    return {
        "senderId": "opscore",
        "messageType": "workflow_task",
        "payload": {
            "task_name": task.step_id,
            "parameters": task.resolved_parameters
            if task.resolved_parameters is not None
            else task.parameters,
        },
        "sessionContext": {"sessionId": task.session_id},
        "task_name": task.step_id,
        "opscore_session_id": task.session_id,
        "opscore_task_id": task.task_id,
    }


class Transport(Protocol):
    async def send(self, agent: Agent, task: TaskRun, headers: dict[str, str]) -> None:
        """Deliver the task; raise DispatchError when it was not accepted."""

    async def close(self) -> None: ...


class HttpTransport:
    """POSTs to ``{AGENTKIT_API_URL}/v1/agents/{id}/run``, or to the agent's contactEndpoint.

    On aiohttp's client: a hand-over needs a status code and one keep-alive connection, and
    aiohttp does that in a fifth of the CPU that httpcore (under httpx) takes: 90-120 against
    460-570 microseconds per request (``python -m bench.handover``).
    The session is made on first use, inside the loop that sends (the server's, or the
    SenderThread's).
    """

    def __init__(self, agentkit_api_url: str | None, *, timeout: float) -> None:
        self.agentkit_api_url = agentkit_api_url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def url_for(self, agent: Agent) -> str:
        if self.agentkit_api_url:
            return f"{self.agentkit_api_url}/v1/agents/{agent.agent_id}/run"
        if not agent.contact_endpoint:
            raise DispatchError(
                f"Agent '{agent.agent_id}' has no contactEndpoint and AGENTKIT_API_URL is unset"
            )
        return agent.contact_endpoint

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # agents on uvicorn close idle connections after 5 s: let go of them first
                connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=4.0),
                timeout=self._timeout,
                headers={"User-Agent": USER_AGENT},
                skip_auto_headers=("Accept-Encoding",),
                auto_decompress=False,
            )
        return self._session

    async def send(self, agent: Agent, task: TaskRun, headers: dict[str, str]) -> None:
        url = self.url_for(agent)
        body = orjson.dumps(task_message(task))
        request_headers = {"Content-Type": "application/json", **headers}
        try:
            try:
                status = await self._post(url, body, request_headers)
            except STALE_CONNECTION_ERRORS as exc:
                if isinstance(exc, aiohttp.ClientConnectorError):
                    raise  # it never connected: there is no stale connection to blame
                # A kept-alive connection the agent had just closed: once more, on a fresh one.
                # A hand-over is already at-least-once (a timed-out one is retried as well);
                # agents' reports name the task, so a repeat changes no outcome.
                status = await self._post(url, body, request_headers)
        except HANDOVER_ERRORS as exc:
            raise DispatchError(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc
        if status == 404 and self.agentkit_api_url:
            raise DispatchError(f"AgentKit does not know agent '{agent.agent_id}' (404)")
        if not 200 <= status < 300:
            raise DispatchError(f"POST {url} answered {status}")

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        async with self._client().post(url, data=body, headers=headers) as response:
            length = response.content_length
            if length is not None and length <= MAX_ANSWER_BYTES:
                await response.read()  # read to the end, so the connection is kept for reuse
            else:
                response.close()  # long or open-ended: not worth reading, nor keeping
            return response.status

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class SenderThread:
    """Runs another transport's hand-overs on a private event loop in its own thread.

    Under heavy API load the server's event loop serves every ready connection once per
    iteration, and one iteration can take 100 ms; the HTTP client yields to the loop several
    times per request, so handing a task over took one to three seconds exactly when the fleet
    was busiest. On its own loop a hand-over takes its usual few milliseconds whatever the load.
    The thread starts with the first hand-over, so apps that never dispatch never start it.
    """

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _sender_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="opscore-sender", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    async def send(self, agent: Agent, task: TaskRun, headers: dict[str, str]) -> None:
        sending = asyncio.run_coroutine_threadsafe(
            self.inner.send(agent, task, headers), self._sender_loop()
        )
        await asyncio.wrap_future(sending)

    async def close(self) -> None:
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            await self.inner.close()
            return
        try:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.inner.close(), loop))
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, 5)
            if not thread.is_alive():
                loop.close()
