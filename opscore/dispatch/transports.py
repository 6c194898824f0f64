"""How a task reaches an agent: straight to its contactEndpoint, or through AgentKit's run endpoint.

Both carry the same AgentKit message (DESIGN.md, contract 3): exactly the fields AgentKit itself
forwards to an agent. Straight to the agent, the HTTP answer is the outcome (AgentKit's example
agent works inside the request and answers ``{"status": "completed", "result": ...}``); through
AgentKit the answer is always 202, and the agent's state reports decide.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import aiohttp
import orjson

from .. import __version__
from ..models import Agent, TaskRun
from ..models.usage import usage_from

USER_AGENT = f"opscore/{__version__}"
# what aiohttp raises for a hand-over that did not happen (bad URL, refused, reset, timeout...)
HANDOVER_ERRORS = (aiohttp.ClientError, TimeoutError, ValueError)
# the connection died under a request, as a reused one does when the agent closed it meanwhile
STALE_CONNECTION_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
# an answer carries a task's result; past this size it is not read and the attempt fails
MAX_ANSWER_BYTES = 4 * 1024 * 1024
# answers that say the agent did the task, or refused it; any other 2xx means "working on it"
_DONE = frozenset({"completed", "complete", "succeeded", "success", "done"})
_FAILED = frozenset({"failed", "failure", "error", "ignored", "rejected"})

Outcome = Literal["completed", "failed", "accepted"]


class DispatchError(Exception):
    """The task could not be handed over (not sent, or no answer); the engine retries it.

    ``unreachable`` says no connection could be made at all (refused, no route): evidence that
    the agent is down, which liveness counts like a probe without an answer. ``timed_out`` says
    no answer came within the attempt's own timeout: the attempt timed out. ``too_large``: the
    agent answered, with more than Ops-Core reads (``MAX_ANSWER_BYTES``); asking again would
    get the same.
    """

    def __init__(
        self,
        message: str,
        *,
        unreachable: bool = False,
        timed_out: bool = False,
        too_large: bool = False,
    ) -> None:
        super().__init__(message)
        self.unreachable = unreachable
        self.timed_out = timed_out
        self.too_large = too_large


@dataclass(frozen=True)
class HandoverAnswer:
    """What a hand-over's HTTP answer says about the attempt."""

    outcome: Outcome
    status_code: int
    result: Any = None
    error: str | None = None
    usage: dict[str, Any] | None = None  # tokens and model, when the agent says (usage_from)
    remote: dict[str, Any] | None = None  # A2A: the remote task as answered (dispatch/a2a.py)


def task_message(task: TaskRun, *, now: datetime | None = None) -> dict[str, Any]:
    """The AgentKit ``workflow_task`` message for one attempt, field for field as AgentKit
    forwards it to an agent (``MessagePayload.model_dump(mode="json")``)."""
    session_id = task.session_id
    return {
        "senderId": "opscore",
        "timestamp": (now or datetime.now(UTC)).isoformat(),
        "messageType": "workflow_task",
        "payload": {
            "task_name": task.step_id,
            "parameters": task.resolved_parameters
            if task.resolved_parameters is not None
            else task.parameters,
        },
        "sessionContext": {"sessionId": session_id, "priorMessages": []},
        "task_name": task.step_id,
        "opscore_session_id": session_id,
        "opscore_task_id": task.task_id,
    }


def read_answer(status: int, body: bytes | None) -> HandoverAnswer:
    """Turn an agent's HTTP answer into an outcome (docs/agentkit.md, "The hand-over's answer")."""
    data: Any = None
    if body:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = None
    said = data.get("status") if isinstance(data, dict) else None
    said = said.lower() if isinstance(said, str) else None
    if not 200 <= status < 300:
        return HandoverAnswer("failed", status, error=f"answered {status}: {_detail(data)}")
    if said in _DONE:
        return HandoverAnswer(
            "completed", status, result=data.get("result"), usage=usage_from(data.get("usage"))
        )
    if said in _FAILED:
        return HandoverAnswer("failed", status, error=f"agent answered '{said}': {_detail(data)}")
    return HandoverAnswer("accepted", status)


def _detail(data: Any) -> str:
    if not isinstance(data, dict):
        return "no detail"
    detail = data.get("detail", data.get("error", data.get("reason", data.get("message"))))
    if isinstance(detail, dict):  # AgentKit's {"error_code": ..., "message": ...}
        code, message = detail.get("error_code"), detail.get("message")
        detail = f"{code}: {message}" if code and message else (message or code or detail)
    text = detail if isinstance(detail, str) else orjson.dumps(detail).decode()
    return text[:2000] if text else "no detail"


class Transport(Protocol):
    @property
    def name(self) -> str:
        """How tasks travel ("agent": straight to the agent, "agentkit": through AgentKit);
        the ``transport`` label of ``opscore_dispatches_total``."""
        ...

    def endpoint(self, agent: Agent) -> str | None:
        """The URL a hand-over to ``agent`` goes to (None when there is none)."""
        ...

    async def send(
        self, agent: Agent, task: TaskRun, headers: dict[str, str], *, timeout: float
    ) -> HandoverAnswer:
        """Deliver the task and read the answer within ``timeout`` seconds; raise
        DispatchError when it was not delivered or no answer came."""
        ...

    async def close(self) -> None: ...


class HttpTransport:
    """POSTs to the agent's contactEndpoint, or to ``{AGENTKIT_API_URL}/v1/agents/{id}/run``.

    On aiohttp's client: a hand-over needs a status code and one keep-alive connection, and
    aiohttp does that in a fifth of the CPU that httpcore (under httpx) takes: 90-120 against
    460-570 microseconds per request (``python -m bench.handover``).
    The session is made on first use, inside the loop that sends (the server's, or the
    SenderThread's). ``connect_timeout`` bounds reaching the agent; the whole hand-over is
    bounded per call by the task's own timeout, since an agent may work inside the request.
    """

    def __init__(self, agentkit_api_url: str | None, *, connect_timeout: float) -> None:
        self.agentkit_api_url = agentkit_api_url
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def name(self) -> str:
        return "agentkit" if self.agentkit_api_url else "agent"

    def endpoint(self, agent: Agent) -> str | None:
        try:
            return self.url_for(agent)
        except DispatchError:
            return None

    def url_for(self, agent: Agent) -> str:
        if self.agentkit_api_url:
            return f"{self.agentkit_api_url}/v1/agents/{agent.agent_id}/run"
        if not agent.contact_endpoint:
            raise DispatchError(f"Agent '{agent.agent_id}' has no contactEndpoint")
        return agent.contact_endpoint

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # agents on uvicorn close idle connections after 5 s: let go of them first;
                # no pool limit, since one open hand-over per busy agent slot is the design
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0),
                headers={"User-Agent": USER_AGENT},
                skip_auto_headers=("Accept-Encoding",),
                auto_decompress=False,
            )
        return self._session

    async def send(
        self, agent: Agent, task: TaskRun, headers: dict[str, str], *, timeout: float
    ) -> HandoverAnswer:
        url = self.url_for(agent)
        body = orjson.dumps(task_message(task))
        request_headers = {"Content-Type": "application/json", **headers}
        limits = aiohttp.ClientTimeout(
            total=max(timeout, 0.001), sock_connect=min(self._connect_timeout, max(timeout, 0.001))
        )
        try:
            try:
                status, answer = await self._post(url, body, request_headers, limits)
            except STALE_CONNECTION_ERRORS as exc:
                if isinstance(exc, aiohttp.ClientConnectorError):
                    raise  # it never connected: there is no stale connection to blame
                # A kept-alive connection the agent had just closed before reading: once more,
                # on a fresh one (a connection closed under a request it read would not be
                # reused by the agent's server while it is answering it).
                status, answer = await self._post(url, body, request_headers, limits)
        except aiohttp.ConnectionTimeoutError as exc:  # never connected: the agent is not there
            raise DispatchError(
                f"POST {url}: no connection within {self._connect_timeout:g}s",
                unreachable=not self.agentkit_api_url,
            ) from exc
        except TimeoutError as exc:
            raise DispatchError(
                f"POST {url}: no answer within {timeout:g}s", timed_out=True
            ) from exc
        except HANDOVER_ERRORS as exc:
            raise DispatchError(
                f"POST {url} failed: {type(exc).__name__}: {exc}",
                unreachable=isinstance(exc, aiohttp.ClientConnectorError)
                and not self.agentkit_api_url,
            ) from exc
        if self.agentkit_api_url:
            if status == 404:
                raise DispatchError(f"AgentKit does not know agent '{agent.agent_id}' (404)")
            if not 200 <= status < 300:
                raise DispatchError(f"POST {url} answered {status}")
            # AgentKit forwards in the background and drops the agent's answer: reports decide
            return HandoverAnswer("accepted", status)
        if answer is None and 200 <= status < 300:
            return HandoverAnswer(
                "failed", status, error=f"the answer is larger than {MAX_ANSWER_BYTES} bytes"
            )
        return read_answer(status, answer)

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], limits: aiohttp.ClientTimeout
    ) -> tuple[int, bytes | None]:
        async with self._client().post(url, data=body, headers=headers, timeout=limits) as response:
            length = response.content_length
            if length is not None and length > MAX_ANSWER_BYTES:
                response.close()  # not worth reading, nor keeping
                return response.status, None
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.content.iter_chunked(64 * 1024):
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:  # chunked past the limit: stop reading, drop it
                    response.close()
                    return response.status, None
                chunks.append(chunk)
            return response.status, b"".join(chunks)

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

    @property
    def name(self) -> str:
        return self.inner.name

    def endpoint(self, agent: Agent) -> str | None:
        return self.inner.endpoint(agent)

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

    async def send(
        self, agent: Agent, task: TaskRun, headers: dict[str, str], *, timeout: float
    ) -> HandoverAnswer:
        sending = asyncio.run_coroutine_threadsafe(
            self.inner.send(agent, task, headers, timeout=timeout), self._sender_loop()
        )
        return await asyncio.wrap_future(sending)

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
