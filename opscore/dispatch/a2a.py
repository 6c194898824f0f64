"""A2A agents on the wire: reading an agent card, sending a task as ``SendMessage``, asking
after it (``GetTask``) and cancelling it (``CancelTask``), with the official ``a2a-sdk`` client.

Ops-Core never waits on an A2A agent's work: ``SendMessage`` goes out with
``returnImmediately``, so the answer is the remote task as it stands (usually submitted or
working); its outcome arrives as a push notification (when the agent's card says it can push
and ``OPSCORE_PUBLIC_URL`` says where to) or by polling ``GetTask`` (``workflow/a2a.py``).
Every request carries the ``A2A-Version`` header. What the workflow needs of an answer travels
as plain JSON (``MessageToDict``), so nothing above this module handles protobuf.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import httpx
from a2a.client import ClientCallContext, ClientConfig, ClientFactory
from a2a.client.client import Client
from a2a.client.errors import A2AClientTimeoutError
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    TaskPushNotificationConfig,
)
from a2a.utils.constants import PROTOCOL_VERSION_CURRENT, VERSION_HEADER
from a2a.utils.errors import A2AError
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.struct_pb2 import Struct, Value

from ..models import Agent, TaskRun
from ..models.a2a import A2ACard
from ..storage.base import Storage
from .a2a_content import a2a_state, parameters_text, reply_result
from .capped_http import AnswerTooLargeError, CappedTransport
from .transports import MAX_ANSWER_BYTES, USER_AGENT, DispatchError, HandoverAnswer

CARD_PATH = "/.well-known/agent-card.json"
MAX_CARD_BYTES = 512 * 1024
CARD_TIMEOUT = 5.0  # an operator waits on the card's read: a dead address fails fast
# the interfaces Ops-Core speaks, best first (gRPC needs the a2a-sdk[grpc] extra)
BINDINGS = ("JSONRPC", "HTTP+JSON")
_VERSIONS = ("1.0", "0.3")


class CardError(Exception):
    """The card could not be read, or does not describe an agent Ops-Core can talk to."""


def card_address(url: str) -> str:
    """The card's URL: the URL itself when it names a JSON file, else the well-known path."""
    if url.rstrip("/").endswith(".json"):
        return url
    return url.rstrip("/") + CARD_PATH


def new_token() -> str:
    return secrets.token_urlsafe(32)


class PushTokens:
    """The token an A2A agent sends back with each push notification (``X-A2A-Notification-
    Token``): an HMAC of the task id and attempt under a secret kept in the store, so every
    replica checks a notification that another replica asked for, nothing per task is stored,
    and a notification about an earlier attempt no longer matches."""

    KIND, DOC_ID = "secret", "a2a-push"

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._secret: bytes | None = None
        self._lock = asyncio.Lock()

    async def secret(self) -> bytes:
        if self._secret is None:
            async with self._lock:
                if self._secret is None:
                    await self.storage.put_document(
                        self.KIND, self.DOC_ID, secrets.token_hex(32), due_at=None, only_new=True
                    )
                    stored = await self.storage.get_document(self.KIND, self.DOC_ID)
                    if stored is None:
                        raise RuntimeError("the A2A push secret could not be stored")
                    self._secret = stored.encode()
        return self._secret

    async def token(self, task_id: str, attempt: int) -> str:
        mac = hmac.new(await self.secret(), f"{task_id}:{attempt}".encode(), hashlib.sha256)
        return mac.hexdigest()

    async def check(self, task_id: str, attempt: int, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(await self.token(task_id, attempt), token)


class A2AClients:
    """One a2a-sdk client per A2A agent, rebuilt from the stored card (any replica can)."""

    def __init__(self, *, timeout: float, public_url: str | None) -> None:
        self.timeout = timeout
        self.public_url = public_url
        self._http: httpx.AsyncClient | None = None
        self._clients: dict[str, tuple[str, Client]] = {}

    def http(self) -> httpx.AsyncClient:
        if self._http is None or self._http.is_closed:
            self._http = httpx.AsyncClient(
                # an agent's answer is read whole: no more of it than a pushed agent's
                transport=CappedTransport(MAX_ANSWER_BYTES),
                timeout=httpx.Timeout(self.timeout),
                headers={"User-Agent": USER_AGENT, VERSION_HEADER: PROTOCOL_VERSION_CURRENT},
                follow_redirects=False,
            )
        return self._http

    # --- the card --------------------------------------------------------------------------

    async def read_card(self, url: str) -> A2ACard:
        """Fetch and check an agent card; CardError says why it will not do."""
        address = card_address(url)
        try:
            async with self.http().stream(
                "GET", address, timeout=min(self.timeout, CARD_TIMEOUT)
            ) as response:
                if response.status_code != 200:
                    raise CardError(f"GET {address} answered {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_CARD_BYTES:
                        raise CardError(f"the card at {address} is larger than {MAX_CARD_BYTES} B")
        except CardError:
            raise
        except Exception as exc:  # any URL an operator can type: a clear 422, never a 500
            raise CardError(f"cannot read {address}: {type(exc).__name__}: {exc}") from None
        try:
            data = json.loads(body)
            card = ParseDict(data, AgentCard(), ignore_unknown_fields=True)
        except (ValueError, ParseError) as exc:
            raise CardError(f"{address} is not an A2A agent card: {exc}") from None
        if not isinstance(data, dict):
            raise CardError(f"{address} is not an A2A agent card")
        interface = _best_interface(card)
        if interface is None:
            offered = sorted({i.protocol_binding for i in card.supported_interfaces}) or ["none"]
            raise CardError(
                f"the card offers no interface Ops-Core speaks ({', '.join(BINDINGS)}); "
                f"it offers: {', '.join(offered)}"
            )
        binding, version, target = interface
        return A2ACard(
            card_url=address,
            name=card.name,
            description=card.description[:2000],
            url=target,
            protocol_binding=binding,
            protocol_version=version,
            push_notifications=card.capabilities.push_notifications,
            skills=[s.id for s in card.skills if s.id][:100],
            card=data,
        )

    # --- calls -----------------------------------------------------------------------------

    def client(self, agent: Agent) -> Client:
        """The client for ``agent``, made once per card (a new card makes a new client)."""
        card = agent.a2a
        if card is None:
            raise DispatchError(f"Agent '{agent.agent_id}' has no A2A card")
        key = json.dumps(card.card, sort_keys=True) + card.url + card.protocol_binding
        cached = self._clients.get(agent.agent_id)
        if cached is not None and cached[0] == key:
            return cached[1]
        parsed = ParseDict(card.card, AgentCard(), ignore_unknown_fields=True)
        factory = ClientFactory(
            ClientConfig(
                streaming=False,
                httpx_client=self.http(),
                supported_protocol_bindings=[card.protocol_binding],
                use_client_preference=True,
            )
        )
        client = factory.create(parsed)
        self._clients[agent.agent_id] = (key, client)
        return client

    async def send(
        self, agent: Agent, task: TaskRun, *, timeout: float, push_token: str | None
    ) -> HandoverAnswer:
        """``SendMessage`` with ``returnImmediately``; the answer carries the remote task (or
        the agent's direct reply) as JSON in ``remote``."""
        parameters = (
            task.resolved_parameters if task.resolved_parameters is not None else task.parameters
        )
        message = Message(
            message_id=f"{task.task_id}-{task.attempts}",
            role=Role.ROLE_USER,
            parts=_parts(parameters),
            metadata=_struct(
                {
                    "opscoreTaskId": task.task_id,
                    "opscoreSessionId": task.session_id,
                    "stepId": task.step_id,
                    "attempt": task.attempts,
                }
            ),
        )
        configuration = SendMessageConfiguration(return_immediately=True)
        if push_token is not None and self.public_url:
            configuration.task_push_notification_config.CopyFrom(
                TaskPushNotificationConfig(url=self.push_url(task.task_id), token=push_token)
            )
        request = SendMessageRequest(message=message, configuration=configuration)
        first = await self._first(self.client(agent).send_message(request, context=_ctx(timeout)))
        if first.HasField("message"):  # a direct reply: the work is done
            reply = MessageToDict(first.message)
            return HandoverAnswer("completed", 200, result=reply_result(reply), remote=None)
        return HandoverAnswer("accepted", 200, remote=MessageToDict(first.task))

    async def follow_up(
        self, agent: Agent, remote_task_id: str, context_id: str, payload: dict[str, Any]
    ) -> dict[str, Any]:
        """The input an ``INPUT_REQUIRED`` task asked for, sent into that task."""
        message = Message(
            message_id=new_token(),
            role=Role.ROLE_USER,
            task_id=remote_task_id,
            context_id=context_id,
            parts=_parts(payload),
        )
        request = SendMessageRequest(
            message=message, configuration=SendMessageConfiguration(return_immediately=True)
        )
        first = await self._first(
            self.client(agent).send_message(request, context=_ctx(self.timeout))
        )
        if first.HasField("task"):
            return MessageToDict(first.task)
        return {"id": remote_task_id, "status": {"state": "TASK_STATE_WORKING"}}

    async def get_task(self, agent: Agent, remote_task_id: str) -> dict[str, Any]:
        client = self.client(agent)
        return await self._call(
            client.get_task(GetTaskRequest(id=remote_task_id), context=_ctx(self.timeout))
        )

    async def cancel_task(self, agent: Agent, remote_task_id: str) -> tuple[str, bool]:
        """``CancelTask``: ("acknowledged", True) when the agent answers with the task
        canceled, else why not and False."""
        client = self.client(agent)
        try:
            remote = await self._call(
                client.cancel_task(CancelTaskRequest(id=remote_task_id), context=_ctx(self.timeout))
            )
        except DispatchError as exc:
            return f"not cancelled: {exc}"[:300], False
        state = a2a_state(remote)
        if state == "canceled":
            return "acknowledged", True
        said = "in an unknown state" if state == "unspecified" else state
        return f"not cancelled: the A2A task is {said}", False

    def pushes(self, agent: Agent) -> bool:
        """Whether tasks sent to ``agent`` ask for push notifications: its card says it can
        push, and Ops-Core has an address to be pushed to."""
        return bool(self.public_url and agent.a2a and agent.a2a.push_notifications)

    def push_url(self, task_id: str) -> str:
        return f"{self.public_url}/v1/opscore/internal/a2a/tasks/{task_id}/notify"

    async def close(self) -> None:
        self._clients.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- inside ----------------------------------------------------------------------------

    async def _first(self, responses: AsyncIterator[Any]) -> Any:
        with self._failures():
            async for response in responses:
                return response
        raise DispatchError("A2A: the agent answered nothing")

    async def _call(self, call: Awaitable[Any]) -> dict[str, Any]:
        with self._failures():
            return MessageToDict(await call)

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Whatever goes wrong in a call is a DispatchError: a timeout, the agent's A2A error
        (unreachable when it never connected), or anything odd (a card's strange URL, a
        broken answer), so an attempt fails and is retried instead of breaking the loop."""
        try:
            yield
        except A2AClientTimeoutError as exc:
            raise DispatchError(f"A2A: no answer within {self.timeout:g}s", timed_out=True) from exc
        except A2AError as exc:
            # a2a-sdk raises its error from httpx's (as for a connection that failed, below)
            if isinstance(exc.__cause__, AnswerTooLargeError):
                too_large = f"A2A: the answer is larger than {MAX_ANSWER_BYTES} bytes"
                raise DispatchError(too_large, too_large=True) from exc
            unreachable = isinstance(exc.__cause__, httpx.ConnectError)
            message = f"A2A: {type(exc).__name__}: {exc}"[:2000]
            raise DispatchError(message, unreachable=unreachable) from exc
        except Exception as exc:
            raise DispatchError(f"A2A: {type(exc).__name__}: {exc}"[:2000]) from exc


def _ctx(timeout: float) -> ClientCallContext:
    return ClientCallContext(timeout=max(timeout, 0.001))


def _parts(payload: dict[str, Any]) -> list[Part]:
    """A message's content: the payload as text (for agents that read only text) and as data."""
    return [Part(text=parameters_text(payload)), Part(data=_value(payload))]


def _value(data: Any) -> Value:
    value = Value()
    value.struct_value.update(data) if isinstance(data, dict) else ParseDict(data, value)
    return value


def _struct(data: dict[str, Any]) -> Struct:
    struct = Struct()
    struct.update(data)
    return struct


def _best_interface(card: AgentCard) -> tuple[str, str, str] | None:
    """(binding, version, url) of the interface to use: JSON-RPC before HTTP+JSON, 1.0
    before 0.3; an interface without a version is taken as 1.0."""
    ranked = []
    for interface in card.supported_interfaces:
        if interface.protocol_binding not in BINDINGS or not interface.url:
            continue
        version = interface.protocol_version or "1.0"
        major_minor = ".".join(version.split(".")[:2])
        if major_minor not in _VERSIONS:
            continue
        ranked.append(
            (
                BINDINGS.index(interface.protocol_binding),
                _VERSIONS.index(major_minor),
                (interface.protocol_binding, version, interface.url),
            )
        )
    return min(ranked)[2] if ranked else None
