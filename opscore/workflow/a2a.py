"""A2A agents' side of a task: registration by card, and what the remote task's state means.

An attempt handed to an A2A agent becomes a remote task (``dispatch/a2a.py``). Whatever tells
Ops-Core about it, the answer to ``SendMessage``, a push notification or a ``GetTask`` poll,
goes through ``apply``, which maps the A2A state onto the attempt:

========================  ===================================================================
A2A state                 Ops-Core
========================  ===================================================================
submitted, working        the attempt goes on (working marks it running)
completed                 the task completes; its artifacts become the result
failed, rejected          the attempt fails (retry, fallback or dead letter, as configured)
canceled                  the attempt fails, unless Ops-Core cancelled it
input_required            the step waits for a signal named after the step; the signal's
                          payload is sent into the remote task, which goes on
auth_required             the attempt fails: Ops-Core cannot authenticate for the agent
========================  ===================================================================

Each move is a compare-and-set on the attempt, so a notification, a poll and an answer that
arrive together apply once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from datetime import datetime, timedelta
from typing import Any

from ..config import Settings
from ..dispatch.a2a import A2AClients, CardError, PushTokens
from ..dispatch.a2a_content import a2a_state, status_text, task_result
from ..dispatch.transports import DispatchError
from ..errors import AuthenticationError, NotFoundError, UnprocessableError
from ..lifecycle.registry import AgentRegistry
from ..models import Agent, Decision, TaskRun, TaskStatus, WaitPolicy
from ..models.a2a import A2ANotificationAccepted, A2ARegistration, A2ATaskRef
from ..models.usage import usage_from
from ..observe.logs import log_operation
from .outcomes import TaskOutcomes
from .transitions import INFLIGHT_TASK, move_task

S = TaskStatus
logger = logging.getLogger("opscore.workflow")
POLLS_AT_ONCE = 16  # GetTask calls one sweep makes concurrently


def poll_every(settings: Settings, pushed: bool) -> timedelta:
    """How long a remote task goes unasked after news of it: long when it pushes its news."""
    every = settings.a2a_push_poll_seconds if pushed else settings.a2a_poll_seconds
    return timedelta(seconds=every)


def checked(ref: A2ATaskRef, now: datetime, settings: Settings) -> A2ATaskRef:
    """``ref`` heard of (or asked after) at ``now``: asked after again a poll later."""
    every = poll_every(settings, ref.pushed)
    return ref.model_copy(update={"checked_at": now, "next_check_at": now + every})


class A2ATasks:
    """Registers A2A agents; applies remote task states; polls; resumes tasks given input."""

    def __init__(
        self,
        outcomes: TaskOutcomes,
        registry: AgentRegistry,
        clients: A2AClients,
        tokens: PushTokens,
    ) -> None:
        self.outcomes = outcomes
        self.engine = outcomes.engine
        self.storage = outcomes.storage
        self.registry = registry
        self.clients = clients
        self.tokens = tokens
        self._polling: asyncio.Task[None] | None = None
        self._abandoning: set[asyncio.Task[None]] = set()

    # --- registration ----------------------------------------------------------------------

    async def register(self, body: A2ARegistration) -> tuple[Agent, bool]:
        """Read the agent's card and register (or refresh) it; its skills are capabilities."""
        try:
            card = await self.clients.read_card(body.card_url)
        except CardError as exc:
            # the URL given does not lead to a usable card: the request cannot be done
            raise UnprocessableError(str(exc), code="A2A_CARD_UNREADABLE") from None
        agent_id = body.agent_id or _slug(card.name) or str(uuid.uuid4())
        capabilities = list(dict.fromkeys([*card.skills, *body.capabilities]))[:100]
        agent, created = await self.registry.register_a2a(
            agent_id,
            card=card,
            capabilities=capabilities,
            max_concurrency=body.max_concurrency,
            metadata=body.metadata,
        )
        log_operation(
            "agent.a2a_registered" if created else "agent.a2a_refreshed",
            {"agentId": agent_id, "cardUrl": card.card_url, "skills": card.skills},
        )
        return agent, created

    # --- what the agent says ---------------------------------------------------------------

    async def answered(self, task: TaskRun, agent: Agent, remote: dict[str, Any]) -> None:
        """The answer to ``SendMessage``: the remote task as it stood then."""
        current = await self.storage.get_task(task.task_id)
        if current is not None and current.attempts == task.attempts:
            await self.apply(current, remote, via="answer", pushed=self.clients.pushes(agent))

    async def notified(
        self, task_id: str, token: str | None, body: dict[str, Any]
    ) -> A2ANotificationAccepted:
        """A push notification (a StreamResponse: task, statusUpdate or artifactUpdate), checked
        by its token. A status that ends or interrupts the task is read in full (GetTask)."""
        task = await self.storage.get_task(task_id)
        if task is None:
            raise NotFoundError(f"Task '{task_id}' does not exist", code="TASK_NOT_FOUND")
        if not await self.tokens.check(task_id, task.attempts, token):
            raise AuthenticationError(
                "The notification's token does not match this task's current attempt",
                code="A2A_TOKEN_MISMATCH",
            )
        if "task" in body and isinstance(body["task"], dict):
            remote: dict[str, Any] = body["task"]
        elif "statusUpdate" in body and isinstance(body["statusUpdate"], dict):
            update = body["statusUpdate"]
            remote = {
                "id": update.get("taskId"),
                "contextId": update.get("contextId", ""),
                "status": update.get("status") or {},
            }
        else:  # an artifact on its way: the completion will bring it all
            return A2ANotificationAccepted(
                status="ignored", task_id=task_id, reason="no status in the notification"
            )
        state = a2a_state(remote)
        if state in ("completed", "failed", "rejected", "input_required") and "task" not in body:
            agent = await self.storage.get_agent(task.agent_id or "")
            if agent is not None and remote.get("id"):
                try:
                    remote = await self.clients.get_task(agent, str(remote["id"]))
                except DispatchError as exc:  # the poll will ask again
                    logger.warning("GetTask after a notification failed: %s", exc)
                    return A2ANotificationAccepted(
                        status="ignored", task_id=task_id, state=state, reason=str(exc)[:300]
                    )
        applied = await self.apply(task, remote, via="push", pushed=True)
        return A2ANotificationAccepted(
            status="applied" if applied else "ignored",
            task_id=task_id,
            state=a2a_state(remote),
            reason=None if applied else "the attempt had moved on",
        )

    async def sweep(self, now: datetime, tasks: list[TaskRun]) -> None:
        """Ask after every remote task not heard of for a poll interval (``GetTask``): the
        only news of an agent that cannot push, and a safety net for lost notifications. The
        questions go out in the background, so a slow agent never holds up dispatching; a
        round still under way when the next is due makes that one skip. ``tasks``: the
        in-flight tasks as read for this round (inflight_sweeps.py)."""
        if self._polling is not None and not self._polling.done():
            return
        due = []
        for task in tasks:
            ref = task.a2a
            if ref is None or task.status not in INFLIGHT_TASK:
                continue
            # a reference written before nextCheckAt existed: its last check and the interval
            check_at = ref.next_check_at or (
                ref.checked_at + poll_every(self.engine.settings, ref.pushed)
                if ref.checked_at
                else None
            )
            if check_at is None or now >= check_at:
                due.append(task)
        if due:
            self._polling = asyncio.create_task(self._poll_all(due))

    async def _poll_all(self, tasks: list[TaskRun]) -> None:
        gate = asyncio.Semaphore(POLLS_AT_ONCE)

        async def poll(task: TaskRun) -> None:
            async with gate:
                try:
                    await self._poll(task)
                except Exception:  # one bad answer must not stop the others
                    logger.exception("A2A poll failed", extra={"taskId": task.task_id})

        await asyncio.gather(*(poll(t) for t in tasks))

    def attempt_timed_out(self, task: TaskRun) -> None:
        """An attempt given up for its timeout: its remote task is cancelled (in the
        background), so the agent does not go on working for nobody while a retry runs."""
        if task.a2a is None or not task.a2a.task_id or task.agent_id is None:
            return
        abandoning = asyncio.create_task(self._abandon(task))
        self._abandoning.add(abandoning)
        abandoning.add_done_callback(self._abandoning.discard)

    async def _abandon(self, task: TaskRun) -> None:
        assert task.a2a is not None
        agent = await self.storage.get_agent(task.agent_id or "")
        if agent is None:
            return
        outcome, _ = await self.clients.cancel_task(agent, task.a2a.task_id)
        log_operation(
            "task.a2a_abandoned",
            {
                "taskId": task.task_id,
                "attempt": task.attempts,
                "a2aTaskId": task.a2a.task_id,
                "outcome": outcome,
            },
        )

    async def close(self) -> None:
        """Stop a poll round and cancellations under way (the app is stopping)."""
        polling, self._polling = self._polling, None
        pending = [*self._abandoning, *([polling] if polling is not None else [])]
        for running in pending:
            if not running.done():
                running.cancel()
        for running in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running

    async def _poll(self, task: TaskRun) -> None:
        agent = await self.storage.get_agent(task.agent_id or "")
        if agent is None or task.a2a is None:
            return
        try:
            remote = await self.clients.get_task(agent, task.a2a.task_id)
        except DispatchError as exc:
            if exc.too_large:  # the agent's task is more than Ops-Core reads: so it will stay
                await self.outcomes.fail_attempt(task, str(exc), outcome="agent_error")
                return
            logger.warning(
                "GetTask failed", extra={"taskId": task.task_id, "error": str(exc)[:300]}
            )
            await self._record(
                task, a2a=checked(task.a2a, self.engine.clock(), self.engine.settings)
            )
            return
        await self.apply(task, remote, via="poll", pushed=task.a2a.pushed)

    # --- the mapping -----------------------------------------------------------------------

    async def apply(self, task: TaskRun, remote: dict[str, Any], *, via: str, pushed: bool) -> bool:
        """Apply the remote task's state to this attempt; False when it no longer applies
        (another attempt, another remote task, or the attempt already ended)."""
        remote_id = str(remote.get("id") or "")
        if task.a2a is not None and remote_id and task.a2a.task_id != remote_id:
            return False
        if task.status not in INFLIGHT_TASK:
            return False
        state = a2a_state(remote)
        now = self.engine.clock()
        ref = A2ATaskRef(
            task_id=remote_id or (task.a2a.task_id if task.a2a else ""),
            context_id=str(remote.get("contextId") or (task.a2a.context_id if task.a2a else "")),
            state=state,
            message=status_text(remote),
            pushed=pushed,
            checked_at=now,
            next_check_at=now + poll_every(self.engine.settings, pushed),
        )
        log_operation(
            "task.a2a_state",
            {"taskId": task.task_id, "a2aTaskId": ref.task_id, "state": state, "via": via},
        )
        usage = usage_from((remote.get("metadata") or {}).get("usage"))
        if state == "completed":
            task = await self._with_ref(task, ref) or task
            return await self.outcomes.complete_task(task, task_result(remote), usage=usage)
        if state in ("failed", "rejected", "auth_required", "canceled"):
            task = await self._with_ref(task, ref) or task
            return await self.outcomes.fail_attempt(
                task, _failure(state, ref), outcome="agent_error"
            )
        if state == "input_required":
            return await self._wait_for_input(task, ref)
        if state == "working" and task.status == S.DISPATCHED:
            return (
                await self.outcomes.mark_running(task, now, a2a=ref, awaiting_answer=False)
                is not None
            )
        return await self._with_ref(task, ref) is not None

    async def _with_ref(self, task: TaskRun, ref: A2ATaskRef) -> TaskRun | None:
        return await self._record(task, a2a=ref, awaiting_answer=False)

    async def _record(self, task: TaskRun, **changes: Any) -> TaskRun | None:
        """Write on this very attempt while it is in flight; None when it has moved on."""
        return await self.storage.update_task(
            task.task_id, changes, expect=[s.value for s in INFLIGHT_TASK], attempt=task.attempts
        )

    async def _wait_for_input(self, task: TaskRun, ref: A2ATaskRef) -> bool:
        """The agent asks for input: the step waits for a signal named after it, holding its
        agent slot (the agent keeps the task's context)."""
        waiting = await move_task(
            self.storage,
            task.task_id,
            S.WAITING,
            only_from=INFLIGHT_TASK,
            attempt=task.attempts,
            a2a=ref,
            awaiting_answer=False,
            wait=WaitPolicy(signal=task.step_id, prompt=ref.message or "The agent asks for input."),
            started_at=task.started_at or self.engine.clock(),
            deadline=None,
        )
        if waiting is None:
            return False
        self.engine.observe("waiting", waiting)
        for listener in self.engine.wait_listeners:
            await listener(waiting)
        return True

    async def resume(self, task: TaskRun, decision: Decision) -> TaskRun | None:
        """A signal brought the input an ``input_required`` task asked for: the task runs again
        (its deadline restarts) and the payload goes into the remote task. None when it was no
        longer waiting."""
        if task.a2a is None:
            return None
        now = self.engine.clock()
        running = await move_task(
            self.storage,
            task.task_id,
            S.RUNNING,
            only_from=frozenset({S.WAITING}),
            attempt=task.attempts,
            decision=decision,
            deadline=now + timedelta(seconds=task.timeout_seconds),
            a2a=checked(task.a2a, now, self.engine.settings).model_copy(
                update={"state": "working"}
            ),
        )
        if running is None:
            return None
        agent = await self.storage.get_agent(task.agent_id or "")
        try:
            if agent is None:
                raise DispatchError(f"agent '{task.agent_id}' is no longer registered")
            remote = await self.clients.follow_up(
                agent, task.a2a.task_id, task.a2a.context_id, decision.payload
            )
        except DispatchError as exc:
            await self.outcomes.fail_attempt(
                running, f"the input could not be sent: {exc}", outcome="dispatch_error"
            )
            return await self.storage.get_task(task.task_id)
        await self.apply(running, remote, via="answer", pushed=task.a2a.pushed)
        return await self.storage.get_task(task.task_id)


def _failure(state: str, ref: A2ATaskRef) -> str:
    said = f": {ref.message}" if ref.message else ""
    if state == "canceled":
        return f"the A2A agent cancelled the task{said}"
    if state == "auth_required":
        return f"the A2A agent requires authentication Ops-Core cannot give{said}"
    return f"the A2A agent says {state}{said}"


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip().lower()).strip("-._")
    return slug[:100]
