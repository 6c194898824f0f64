"""Pull workers: agents that claim their tasks instead of being sent them; and the routing of
each hand-over by how its agent takes work (push, pull or A2A).

The dispatcher matches a task to a pull worker exactly as to any agent (capability, priority,
slots, limits); the hand-over then sends nothing: the task waits, dispatched to that worker,
until the worker's long-poll claims it (``workflow/workers.py``). A worker needs only outbound
requests, so it runs behind NAT, a proxy or in a notebook. Claims read the store, so a worker
may poll any replica; a hand-over on this replica wakes its waiting polls at once.
"""

from __future__ import annotations

import asyncio

from ..models import Agent, TaskRun
from .a2a import A2AClients, PushTokens
from .transports import HandoverAnswer, Transport


class PullInbox:
    """Wakes the long-polls of a worker when a task is handed to it in this process."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def event(self, agent_id: str) -> asyncio.Event:
        return self._events.setdefault(agent_id, asyncio.Event())

    def notify(self, agent_id: str) -> None:
        event = self._events.get(agent_id)
        if event is not None:
            event.set()

    def forget(self, agent_id: str) -> None:
        """No poll of this worker waits any more."""
        event = self._events.get(agent_id)
        if event is not None and not event.is_set():
            self._events.pop(agent_id, None)


class RoutingTransport:
    """Pushes to push agents through ``inner``; leaves tasks for pull workers to claim; sends
    to A2A agents with ``SendMessage`` (``a2a.py``)."""

    def __init__(
        self,
        inner: Transport,
        inbox: PullInbox,
        *,
        a2a: A2AClients | None = None,
        tokens: PushTokens | None = None,
    ) -> None:
        self.inner = inner
        self.inbox = inbox
        self.a2a = a2a
        self.tokens = tokens

    @property
    def name(self) -> str:
        return self.inner.name

    def endpoint(self, agent: Agent) -> str | None:
        if agent.delivery == "a2a":
            return agent.a2a.url if agent.a2a else None
        return None if agent.delivery == "pull" else self.inner.endpoint(agent)

    async def send(
        self, agent: Agent, task: TaskRun, headers: dict[str, str], *, timeout: float
    ) -> HandoverAnswer:
        if agent.delivery == "pull":
            self.inbox.notify(agent.agent_id)
            return HandoverAnswer("accepted", 202)  # the worker claims it; its results decide
        if agent.delivery == "a2a" and self.a2a is not None:
            token = (
                await self.tokens.token(task.task_id, task.attempts)
                if self.tokens is not None and self.a2a.pushes(agent)
                else None
            )
            return await self.a2a.send(
                agent, task, timeout=min(timeout, self.a2a.timeout), push_token=token
            )
        return await self.inner.send(agent, task, headers, timeout=timeout)

    async def close(self) -> None:
        await self.inner.close()
        if self.a2a is not None:
            await self.a2a.close()
