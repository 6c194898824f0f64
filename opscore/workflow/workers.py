"""Pull workers' side of a task: claim by long-poll, a lease kept by heartbeats, the result,
or handing it back.

A task dispatched to a pull worker (``dispatch/pull.py``) waits for the worker's claim. The
claim moves it to ``running`` under a lease of ``OPSCORE_WORKER_LEASE_SECONDS``; each heartbeat
extends the lease. A worker that stops heartbeating (killed, partitioned) loses the task when
the lease runs out: it is queued again without charging an attempt, for another worker. A
cancelled task answers the next heartbeat with 409 ``LEASE_LOST`` (``cancelled: true``), and
that heartbeat is recorded as the worker's acknowledgement of the cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import datetime, timedelta
from typing import Any

from ..dispatch.pull import PullInbox
from ..dispatch.transports import task_message
from ..errors import ConflictError
from ..lifecycle.state import OFFLINE, AgentStates
from ..models import Agent, LeaseRenewed, TaskRun, TaskStatus, WorkerTask
from ..models.usage import usage_from
from ..observe.logs import log_operation
from .outcomes import TaskOutcomes
from .transitions import INFLIGHT_TASK

S = TaskStatus
POLL_SLICE = 0.5  # a long-poll looks at the store at least this often (other replicas' hand-overs)
SEEN_EVERY = 5.0  # ...but records the worker as seen at most this often (a write per slice
# for every idle worker was 2 writes a second each, for nothing liveness needs)


class WorkerService:
    """What pull workers call: claim, heartbeat, complete, fail, hand back; the lease sweep."""

    def __init__(self, outcomes: TaskOutcomes, states: AgentStates, inbox: PullInbox) -> None:
        self.outcomes = outcomes
        self.engine = outcomes.engine
        self.storage = outcomes.storage
        self.states = states
        self.inbox = inbox

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.engine.settings.worker_lease_seconds)

    async def claim(self, agent_id: str, *, wait: float, most: int) -> list[WorkerTask]:
        """The tasks handed to this worker, waiting up to ``wait`` seconds for one."""
        deadline = time.monotonic() + wait
        agent = await self._worker(agent_id)
        seen = time.monotonic()
        every = min(SEEN_EVERY, self.lease.total_seconds() / 3)
        if agent.heartbeat_interval_seconds:  # it promised to be heard this often
            every = min(every, agent.heartbeat_interval_seconds / 2)
        event = self.inbox.event(agent_id)
        try:
            while True:
                event.clear()
                claimed = await self._take(agent, most)
                left = deadline - time.monotonic()
                if claimed or left <= 0:
                    return claimed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(left, POLL_SLICE))
                if time.monotonic() - seen >= every:  # polling counts as being alive
                    agent, seen = await self._worker(agent_id), time.monotonic()
                else:  # what was handed to it meanwhile, without a write
                    agent = await self.states.registry.get_agent(agent_id)
        finally:
            self.inbox.forget(agent_id)

    async def _take(self, agent: Agent, most: int) -> list[WorkerTask]:
        taken: list[WorkerTask] = []
        for task_id in agent.active_tasks:
            if len(taken) >= most:
                break
            task = await self.storage.get_task(task_id)
            if task is None or task.status != S.DISPATCHED or task.agent_id != agent.agent_id:
                continue
            now = self.engine.clock()
            running = await self.outcomes.mark_running(task, now, lease_until=now + self.lease)
            if running is None:
                continue  # cancelled, or claimed by this worker's other poll
            log_operation(
                "task.claimed",
                {"sessionId": task.session_id, "taskId": task.task_id, "agentId": agent.agent_id},
            )
            taken.append(self._as_claimed(running, now))
        return taken

    def _as_claimed(self, task: TaskRun, now: datetime) -> WorkerTask:
        return WorkerTask(
            task_id=task.task_id,
            session_id=task.session_id,
            task_name=task.step_id,
            capability=task.agent_capability,
            attempt=task.attempts,
            message=task_message(task, now=now),
            lease_seconds=self.lease.total_seconds(),
            lease_until=task.lease_until or now + self.lease,
        )

    async def heartbeat(self, agent_id: str, task_id: str) -> LeaseRenewed:
        """Extend the lease; 409 LEASE_LOST when the task is no longer this worker's."""
        await self._worker(agent_id)
        task = await self._held(agent_id, task_id)
        now = self.engine.clock()
        renewed = await self.storage.update_task(
            task_id,
            {"lease_until": now + self.lease},
            expect=[S.RUNNING.value],
            attempt=task.attempts,
        )
        if renewed is None:
            await self._held(agent_id, task_id)  # raises with the reason
            raise ConflictError(f"Task '{task_id}' changed; try again", code="LEASE_LOST")
        return LeaseRenewed(task_id=task_id, lease_until=now + self.lease)

    async def complete(
        self, agent_id: str, task_id: str, result: Any, usage: dict[str, Any] | None
    ) -> TaskRun:
        task = await self._held(agent_id, task_id)
        if not await self.outcomes.complete_task(task, result, usage=usage_from(usage)):
            await self._held(agent_id, task_id)
        return await self.engine.get_task(task_id)

    async def fail(self, agent_id: str, task_id: str, error: str | None) -> TaskRun:
        task = await self._held(agent_id, task_id)
        await self.outcomes.fail_attempt(task, error or "worker reported failure", outcome="failed")
        return await self.engine.get_task(task_id)

    async def release(self, agent_id: str, task_id: str) -> TaskRun:
        """The worker hands the task back (it is shutting down): queued again, uncharged."""
        task = await self._held(agent_id, task_id)
        await self.outcomes.requeue_lost(task, f"handed back by worker {agent_id}")
        return await self.engine.get_task(task_id)

    async def sweep(self, now: datetime, tasks: list[TaskRun]) -> None:
        """Queue again, uncharged, every pull task whose lease ran out unclaimed or without a
        heartbeat: its worker is gone, so it is marked offline too and gets no more work
        until it polls again. ``tasks``: the in-flight tasks as read for this round
        (inflight_sweeps.py)."""
        for task in tasks:
            expired = task.lease_until is not None and task.lease_until < now
            if not (task.pull and expired and task.status in INFLIGHT_TASK):
                continue
            if not await self.outcomes.requeue_lost(task, "worker's lease ran out"):
                continue  # moved meanwhile (timed out, answered, another replica's sweep)
            worker = await self.storage.get_agent(task.agent_id) if task.agent_id else None
            if worker is not None and worker.state != OFFLINE:
                await self.states.mark_offline(
                    worker, f"lost the lease of task {task.task_id} (no claim or heartbeat)"
                )

    # --- inside --------------------------------------------------------------------------
    async def _worker(self, agent_id: str) -> Agent:
        """The registered pull worker, seen now (404, or 409 NOT_A_PULL_WORKER)."""
        agent = await self.states.heartbeat(agent_id)
        if agent.delivery != "pull":
            raise ConflictError(
                f"Agent '{agent_id}' takes pushed tasks; register it with delivery 'pull' to "
                "claim work",
                code="NOT_A_PULL_WORKER",
            )
        return agent

    async def _held(self, agent_id: str, task_id: str) -> TaskRun:
        """The task, if this worker holds it now; else 409 LEASE_LOST saying why (and a
        cancellation seen here is recorded as acknowledged)."""
        task = await self.engine.get_task(task_id)
        if task.agent_id == agent_id and task.status in INFLIGHT_TASK:
            return task
        if task.status == S.CANCELLED and task.agent_id == agent_id:
            if task.cancel_acknowledged_at is None:
                await self.storage.update_task(
                    task_id, {"cancel_acknowledged_at": self.engine.clock()}
                )
            raise ConflictError(
                f"Task '{task_id}' was cancelled ({task.cancel_reason}); stop working on it",
                code="LEASE_LOST",
                details={"cancelled": True, "status": task.status.value},
            )
        raise ConflictError(
            f"Task '{task_id}' is no longer held by worker '{agent_id}' (it is "
            f"{task.status.value}); drop it",
            code="LEASE_LOST",
            details={"cancelled": False, "status": task.status.value},
        )
