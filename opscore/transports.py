"""How a task reaches an agent: through AgentKit's run endpoint, or straight to the agent.

Both carry the same AgentKit message (DESIGN.md, contract 3); only the URL differs.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Protocol

import httpcore
import orjson

from . import __version__
from .models import Agent, TaskRun

USER_AGENT = f"opscore/{__version__}".encode()
# what httpcore raises for a hand-over that did not happen (bad URL, refused, reset, timeout...)
HANDOVER_ERRORS = (
    httpcore.UnsupportedProtocol,
    httpcore.NetworkError,
    httpcore.TimeoutException,
    httpcore.ProtocolError,
    httpcore.ProxyError,
    httpcore.PoolTimeout,
    ValueError,
)


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

    Straight on httpcore, the connection pool under httpx: a hand-over needs a status code and
    nothing of httpx's client layer (auth flows, redirects, cookies, URL merging), which cost a
    third of each hand-over's CPU (bench/README.md).
    """

    def __init__(self, agentkit_api_url: str | None, *, timeout: float) -> None:
        self.agentkit_api_url = agentkit_api_url
        self._timeouts = {
            "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
        }
        self._pool = httpcore.AsyncConnectionPool(
            max_connections=200, max_keepalive_connections=50, keepalive_expiry=30.0
        )

    def url_for(self, agent: Agent) -> str:
        if self.agentkit_api_url:
            return f"{self.agentkit_api_url}/v1/agents/{agent.agent_id}/run"
        if not agent.contact_endpoint:
            raise DispatchError(
                f"Agent '{agent.agent_id}' has no contactEndpoint and AGENTKIT_API_URL is unset"
            )
        return agent.contact_endpoint

    async def send(self, agent: Agent, task: TaskRun, headers: dict[str, str]) -> None:
        url = self.url_for(agent)
        body = orjson.dumps(task_message(task))
        request_headers = [
            (b"Content-Type", b"application/json"),
            (b"User-Agent", USER_AGENT),
            *((k.encode(), v.encode()) for k, v in headers.items()),
        ]
        try:
            response = await self._pool.request(
                "POST", url, headers=request_headers, content=body, extensions=self._timeouts
            )
        except HANDOVER_ERRORS as exc:
            raise DispatchError(f"POST {url} failed: {type(exc).__name__}: {exc}") from exc
        if response.status == 404 and self.agentkit_api_url:
            raise DispatchError(f"AgentKit does not know agent '{agent.agent_id}' (404)")
        if not 200 <= response.status < 300:
            raise DispatchError(f"POST {url} answered {response.status}")

    async def close(self) -> None:
        await self._pool.aclose()


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
