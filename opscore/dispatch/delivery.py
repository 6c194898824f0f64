"""Delivery of started attempts: the hand-over to the agent in the background, and what it
gave reported to the workflow room (``hooks.DispatchHooks``), kept and tried again while the
store is away so that an answer the agent already gave is not lost."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from ..errors import StorageError
from ..models import Agent, TaskRun
from ..observe.metrics import Telemetry
from ..observe.tracing import traceparent
from .hooks import DispatchHooks
from .transports import DispatchError, Transport

logger = logging.getLogger("opscore.dispatcher")
# pause after a failed pass or write: doubles from MIN_BACKOFF up to MAX_BACKOFF
MIN_BACKOFF = 0.05
MAX_BACKOFF = 1.0
# how long past an attempt's deadline its outcome is still retried while the store is away
OUTCOME_GRACE = 60.0


class Deliveries:
    """The hand-overs in flight: each sends one attempt and reports its outcome."""

    def __init__(
        self,
        transport: Transport,
        hooks: DispatchHooks,
        *,
        telemetry: Telemetry | None,
        clock: Callable[[], datetime],
    ) -> None:
        self.transport = transport
        self.hooks = hooks
        self.telemetry = telemetry
        self.clock = clock
        self._sends: set[asyncio.Task[None]] = set()
        # tasks whose hand-over answer is being written (kept while the store is away)
        self.recording: set[str] = set()

    async def stop(self) -> None:
        """Hand-overs may wait for agents that work inside the request: give them a moment,
        then let them go (their attempts time out and are retried after a restart)."""
        if not self._sends:
            return
        _, pending = await asyncio.wait(self._sends, timeout=5)
        for send in pending:
            send.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    def hand_over(self, dispatched: TaskRun, agent: Agent) -> None:
        """Send the started attempt in the background; its outcome is reported to the hooks."""
        send = asyncio.create_task(self._send(dispatched, agent))
        self._sends.add(send)
        send.add_done_callback(self._sends.discard)

    async def _send(self, task: TaskRun, agent: Agent) -> None:
        """Hand the attempt over and report the answer; the call may last up to the task's
        deadline, since agents may do the work inside the request."""
        telemetry = self.telemetry
        span = (
            telemetry.dispatch_span(task, agent, self.transport.endpoint(agent))
            if telemetry is not None
            else None
        )
        headers = {"traceparent": traceparent(span.trace_id, span.span_id)} if span else {}
        ok = False
        deadline = task.deadline or self.clock() + timedelta(seconds=task.timeout_seconds)
        timeout = max((deadline - self.clock()).total_seconds(), 0.001)
        report: Callable[[], Awaitable[None]]
        outcome = "error"
        try:
            answer = await self.transport.send(agent, task, headers, timeout=timeout)
            ok = answer.outcome != "failed"
            outcome = answer.outcome
            report = functools.partial(self.hooks.handover_answered, task, agent, answer)
        except DispatchError as exc:
            outcome = "unreachable" if exc.unreachable else "timeout" if exc.timed_out else "error"
            report = functools.partial(
                self.hooks.dispatch_failed,
                task,
                str(exc),
                unreachable=exc.unreachable,
                timed_out=exc.timed_out,
            )
        except Exception as exc:  # a transport bug must not lose the task
            logger.exception("unexpected dispatch error")
            report = functools.partial(
                self.hooks.dispatch_failed, task, f"{type(exc).__name__}: {exc}", unreachable=False
            )
        self.recording.add(task.task_id)
        try:
            await record_outcome(report, task, deadline, self.clock)
        finally:
            self.recording.discard(task.task_id)
            if telemetry is not None:
                telemetry.dispatches.labels(self.transport.name, outcome).inc()
                if span is not None:
                    telemetry.finish_dispatch(span, ok=ok, outcome=outcome)


async def record_outcome(
    report: Callable[[], Awaitable[None]],
    task: TaskRun,
    deadline: datetime,
    clock: Callable[[], datetime],
) -> None:
    """Write what a hand-over gave. While the store is away, keep the outcome and try again
    (with a growing pause) until a little past the attempt's deadline: a result the agent
    already gave is not thrown away, so the task does not run a second time."""
    pause = MIN_BACKOFF
    give_up = deadline + timedelta(seconds=OUTCOME_GRACE)
    while True:
        try:
            await report()
            return
        except StorageError as exc:
            if clock() >= give_up:
                # the timeout sweep retries the attempt once the store is back
                logger.warning(
                    "hand-over outcome not recorded: store unavailable",
                    extra={"taskId": task.task_id, "error": exc.message},
                )
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_BACKOFF)
