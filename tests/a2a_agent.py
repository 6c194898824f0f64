"""A real A2A agent for tests: a2a-sdk's own server (``DefaultRequestHandler``, its JSON-RPC and
agent-card routes, its in-memory task store and, when asked, its push-notification sender),
served by uvicorn on 127.0.0.1.

Its executor is a2a-sdk's sample (``samples/hello_world_agent.py`` in a2aproject/a2a-python):
it publishes the task as submitted, then working with "Processing your question...", waits,
adds a text artifact named ``response`` ("Hello World! You said: ...") and completes; a
cancelled task stops before its artifact, as the sample's does. Like the sample, it declares no
push notifications unless a test asks for them. A test chooses other endings with a ``mode``
parameter (the message's data part), as a real agent's input would: ``fail``, ``reject``,
``input`` (asks for input, then completes with what it got), ``data`` (a data artifact),
``huge`` (a 5 MiB artifact) and ``flaky`` (the first such task fails, the next completes).
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from a2a.server.agent_execution.agent_executor import AgentExecutor
from a2a.server.agent_execution.context import RequestContext
from a2a.server.events.event_queue import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import (
    BasePushNotificationSender,
    InMemoryPushNotificationConfigStore,
    InMemoryTaskStore,
    TaskUpdater,
)
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    Part,
    Task,
    TaskState,
    TaskStatus,
)
from google.protobuf.json_format import MessageToDict
from starlette.applications import Starlette

from .servers import ServerThread


class SampleExecutor(AgentExecutor):
    """a2a-sdk's sample executor, with a test's choice of ending."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.running_tasks: set[str] = set()
        self.cancelled: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self.task_ids: list[str] = []  # the A2A task of each new message, in order
        self.flaky_failures = 0  # mode "flaky": the first task fails, later ones complete

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        task_id = context.task_id or ""
        self.running_tasks.discard(task_id)
        self.cancelled.append(task_id)
        updater = TaskUpdater(
            event_queue=event_queue, task_id=task_id, context_id=context.context_id or ""
        )
        await updater.cancel()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message, task_id, context_id = context.message, context.task_id, context.context_id
        if not message or not task_id or not context_id:
            return
        self.messages.append(MessageToDict(message))
        data = _data(message)
        updater = TaskUpdater(event_queue=event_queue, task_id=task_id, context_id=context_id)
        resumed = context.current_task is not None
        if not resumed:
            self.task_ids.append(task_id)
            await event_queue.enqueue_event(
                Task(
                    id=task_id,
                    context_id=context_id,
                    status=TaskStatus(state=TaskState.TASK_STATE_SUBMITTED),
                    history=[message],
                )
            )
        self.running_tasks.add(task_id)
        await updater.start_work(
            message=updater.new_agent_message(parts=[Part(text="Processing your question...")])
        )
        mode = "" if resumed else str(data.get("mode", ""))
        await asyncio.sleep(float(data.get("seconds", self.seconds)))
        if task_id not in self.running_tasks:  # cancelled meanwhile
            return
        query = context.get_user_input()
        if mode == "flaky" and self.flaky_failures == 0:
            self.flaky_failures += 1
            mode = "fail"
        if mode == "fail":
            await updater.failed(
                message=updater.new_agent_message(parts=[Part(text="could not do it")])
            )
        elif mode == "reject":
            await updater.reject(
                message=updater.new_agent_message(parts=[Part(text="not my kind of task")])
            )
        elif mode == "input":
            await updater.requires_input(
                message=updater.new_agent_message(parts=[Part(text="Which city?")])
            )
        elif mode == "huge":  # an artifact past what Ops-Core reads of an answer (4 MiB)
            await updater.add_artifact(
                parts=[Part(text="x" * (5 * 2**20))], name="response", last_chunk=True
            )
            await updater.complete()
        elif mode == "data":
            await updater.add_artifact(
                parts=[Part(data=_value({"answer": 42, "echo": data}))],
                name="response",
                last_chunk=True,
            )
            await updater.complete()
        else:
            reply = f"Hello World! You said: '{query}'. Thanks for your message!"
            if resumed:
                reply = f"Got it: {data.get('city', query)}"
            await updater.add_artifact(parts=[Part(text=reply)], name="response", last_chunk=True)
            await updater.complete()
        self.running_tasks.discard(task_id)


def _data(message: Any) -> dict[str, Any]:
    for part in MessageToDict(message).get("parts", []):
        if isinstance(part.get("data"), dict):
            return dict(part["data"])
    return {}


def _value(data: dict[str, Any]) -> Any:
    from google.protobuf.struct_pb2 import Value

    value = Value()
    value.struct_value.update(data)
    return value


class A2AAgent:
    """The sample agent on a free loopback port; ``card_url`` is what Ops-Core registers."""

    def __init__(self, *, push: bool = False, seconds: float = 0.3, skill: str = "hello") -> None:
        self.executor = SampleExecutor(seconds)
        self.push = push
        self.skill = skill
        self._http = httpx.AsyncClient(timeout=10) if push else None
        self.server: ServerThread | None = None
        self.versions: list[str | None] = []  # the A2A-Version header of each JSON-RPC call

    def _card(self, port: int) -> AgentCard:
        return AgentCard(
            name="Sample Agent",
            description="A sample agent to test the stream functionality.",
            version="1.0.0",
            capabilities=AgentCapabilities(streaming=True, push_notifications=self.push),
            default_input_modes=["text"],
            default_output_modes=["text", "task-status"],
            skills=[
                AgentSkill(
                    id=self.skill,
                    name="Sample Agent",
                    description="Say hi.",
                    tags=["sample"],
                    examples=["hi"],
                )
            ],
            supported_interfaces=[
                AgentInterface(
                    protocol_binding="JSONRPC",
                    protocol_version="1.0",
                    url=f"http://127.0.0.1:{port}/a2a/jsonrpc",
                )
            ],
        )

    def start(self) -> A2AAgent:
        from .storage_servers import free_port

        port = free_port()
        card = self._card(port)
        push_store = InMemoryPushNotificationConfigStore() if self.push else None
        handler = DefaultRequestHandler(
            agent_executor=self.executor,
            task_store=InMemoryTaskStore(),
            agent_card=card,
            push_config_store=push_store,
            push_sender=BasePushNotificationSender(self._http, push_store)
            if self._http is not None and push_store is not None
            else None,
        )
        app = Starlette(
            routes=[
                *create_agent_card_routes(agent_card=card),
                *create_jsonrpc_routes(request_handler=handler, rpc_url="/a2a/jsonrpc"),
            ]
        )
        self.server = ServerThread(self._recording(app), port=port).start()
        return self

    def _recording(self, app: Any) -> Any:
        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"] == "/a2a/jsonrpc":
                headers = dict(scope["headers"])
                version = headers.get(b"a2a-version")
                self.versions.append(version.decode() if version else None)
            await app(scope, receive, send)

        return recorded

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def card_url(self) -> str:
        return f"{self.url}/.well-known/agent-card.json"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
