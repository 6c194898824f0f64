"""Cancellation that reaches the agent: a push agent working on a task whose run is cancelled
gets a ``cancel_task`` message, shaped like the task message it got (the same ids), at the same
address. Its answer is recorded on the task: ``acknowledged`` (a 2xx), ``ignored`` (a 2xx that
says so, as AgentKit's example agent answers message types it does not handle), or why it did
not arrive. An A2A agent gets ``CancelTask`` for the remote task, acknowledged when the task it
answers is canceled. Pull workers learn it at their next heartbeat instead
(``workflow/workers.py``).

Sent in the background: cancelling a run never waits on a slow agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from ..models import Agent, TaskRun, utcnow
from ..observe.logs import log_operation
from ..storage.base import Storage
from .a2a import A2AClients
from .transports import USER_AGENT, Transport, read_answer, task_message

logger = logging.getLogger("opscore.dispatch")


def cancel_message(task: TaskRun, reason: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The task's own message, as a ``cancel_task``: the same sender, session and task ids."""
    message = task_message(task, now=now)
    message["messageType"] = "cancel_task"
    message["payload"] = {"task_name": task.step_id, "reason": reason}
    return message


class CancelNotifier:
    """Tells push agents that the task they work on was cancelled."""

    def __init__(
        self,
        storage: Storage,
        transport: Transport,
        *,
        timeout: float,
        clock: Callable[[], datetime] = utcnow,
        a2a: A2AClients | None = None,
    ) -> None:
        self.storage = storage
        self.transport = transport
        self.a2a = a2a
        self.timeout = timeout
        self.clock = clock
        self._sending: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def notify(self, task: TaskRun, reason: str) -> None:
        """Send the cancellation of ``task`` (cancelled while on an agent) in the background."""
        if task.agent_id is None or task.pull:
            return
        sending = asyncio.create_task(self._send(task, reason))
        self._sending.add(sending)
        sending.add_done_callback(self._sending.discard)

    async def _send(self, task: TaskRun, reason: str) -> None:
        try:
            agent = await self.storage.get_agent(task.agent_id or "")
            if agent is not None and agent.delivery == "a2a":
                outcome, acknowledged = await self._cancel_a2a(agent, task)
                await self._record(task, outcome, acknowledged=acknowledged)
                return
            url = self.transport.endpoint(agent) if agent is not None else None
            if url is None:
                await self._record(task, "not sent: the agent has no endpoint", acknowledged=False)
                return
            outcome, acknowledged = await self._post(url, cancel_message(task, reason))
            if self.transport.name == "agentkit" and acknowledged:
                # AgentKit answers 202 for the agent and drops the agent's own answer
                outcome, acknowledged = "forwarded through AgentKit", False
            await self._record(task, outcome, acknowledged=acknowledged)
        except Exception:  # a notice that cannot be sent or recorded must not hurt anything
            logger.exception("cancellation not delivered", extra={"taskId": task.task_id})

    async def _cancel_a2a(self, agent: Agent, task: TaskRun) -> tuple[str, bool]:
        if self.a2a is None:
            return "not sent: A2A is not set up", False
        if task.a2a is None or not task.a2a.task_id:
            return "not sent: the agent had not answered with its task yet", False
        return await self.a2a.cancel_task(agent, task.a2a.task_id)

    async def _post(self, url: str, message: dict[str, Any]) -> tuple[str, bool]:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        try:
            async with self._session.post(
                url,
                data=orjson.dumps(message),
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                body = await response.content.read(64 * 1024)
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return f"not delivered: {type(exc).__name__}: {exc}"[:300], False
        if not 200 <= status < 300:
            return f"refused: HTTP {status}", False
        answer = read_answer(status, body)
        if answer.outcome == "failed":  # a 2xx saying ignored/rejected: it goes on working
            return "ignored", False
        return "acknowledged", True

    async def _record(self, task: TaskRun, outcome: str, *, acknowledged: bool) -> None:
        changes: dict[str, Any] = {"cancel_delivery": outcome}
        if acknowledged:
            changes["cancel_acknowledged_at"] = self.clock()
        await self.storage.update_task(task.task_id, changes)
        log_operation(
            "task.cancel_sent",
            {"taskId": task.task_id, "agentId": task.agent_id, "outcome": outcome},
            level=logging.INFO if acknowledged else logging.WARNING,
        )

    async def close(self) -> None:
        for sending in list(self._sending):
            sending.cancel()
        for sending in list(self._sending):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sending
        if self._session is not None:
            await self._session.close()
            self._session = None
