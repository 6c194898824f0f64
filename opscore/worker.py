"""Run Python functions as an Ops-Core pull worker: no open port, only outbound requests.

    from opscore.worker import Worker

    worker = Worker("summarizer-1", url="https://opscore.example.com", api_key="...")

    @worker.task("summarize")
    def summarize(params, ctx):
        return {"summary": params["text"][:200]}

    worker.run()  # until Ctrl-C or SIGTERM

The worker registers itself (``delivery: pull``) with the capabilities of its functions,
long-polls for tasks, keeps each task's lease with heartbeats while its function runs, and
reports the function's return value (or its exception) as the result. Functions may be plain
(run in a thread) or ``async``. A cancelled task sets ``ctx.cancelled``; its result is then
dropped. On shutdown the worker stops claiming, gives running tasks ``shutdown_grace`` seconds
to finish, and hands back what is still running, so another worker takes it at once.

Part of the SDK: it imports the client and the models, never the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .client import APIConnectionError, APIError, AsyncOpsCoreClient, ConflictError
from .models import WorkerTask

logger = logging.getLogger("opscore.worker")
# how long a shutdown waits for the tasks it cancelled to end (a sync handler's thread is not
# waited for: only the coroutine awaiting it)
SETTLE_SECONDS = 5.0
Handler = Callable[[dict[str, Any], "TaskContext"], Any]


@dataclass
class TaskContext:
    """What a task function may want besides its parameters."""

    task_id: str
    session_id: str
    task_name: str
    attempt: int
    message: dict[str, Any]
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class Worker:
    """A pull worker: register functions per capability, then ``run()``."""

    def __init__(
        self,
        agent_id: str,
        *,
        url: str | None = None,
        api_key: str | None = None,
        agent_name: str | None = None,
        max_concurrency: int = 1,
        poll_seconds: float = 20.0,
        shutdown_grace: float = 30.0,
    ) -> None:
        self.agent_id = agent_id
        self.url = url
        self.api_key = api_key
        self.agent_name = agent_name or agent_id
        self.max_concurrency = max_concurrency
        self.poll_seconds = poll_seconds
        self.shutdown_grace = shutdown_grace
        self.handlers: dict[str, Handler] = {}
        self.completed = 0
        self.failed = 0
        self._held: set[str] = set()  # claimed and not yet reported: handed back on shutdown

    def task(self, capability: str) -> Callable[[Handler], Handler]:
        """Register ``fn(params, ctx)`` for tasks that need ``capability``."""

        def register(fn: Handler) -> Handler:
            self.handlers[capability] = fn
            return fn

        return register

    def run(self) -> None:
        """Work until SIGINT or SIGTERM, then shut down gracefully."""

        async def main() -> None:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, stop.set)
            await self.run_async(stop)

        asyncio.run(main())

    async def run_async(self, stop: asyncio.Event | None = None) -> None:
        """Work until ``stop`` is set (forever when None)."""
        stop = stop or asyncio.Event()
        # Any: the async client shares the sync client's signatures, and its calls are awaited
        async with AsyncOpsCoreClient(self.url, self.api_key, timeout=10) as opened:
            client: Any = opened
            await self._register(client)
            running: set[asyncio.Task[None]] = set()
            stopping = asyncio.create_task(stop.wait())
            failures = 0
            try:
                while not stop.is_set():
                    if len(running) >= self.max_concurrency:
                        await asyncio.wait(
                            {*running, stopping}, return_when=asyncio.FIRST_COMPLETED
                        )
                        continue
                    claim: asyncio.Task[Any] = asyncio.create_task(
                        client.claim_tasks(
                            self.agent_id,
                            wait_seconds=self.poll_seconds,
                            max_tasks=self.max_concurrency - len(running),
                        )
                    )
                    await asyncio.wait({claim, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not claim.done():
                        claim.cancel()
                        break
                    try:
                        claimed = claim.result()
                        failures = 0
                    except APIConnectionError as exc:  # Ops-Core away: try again, slower
                        failures += 1
                        logger.warning("cannot reach Ops-Core: %s", exc)
                        await asyncio.sleep(min(0.5 * 2**failures, 30))
                        continue
                    for task in claimed.tasks:
                        work = asyncio.create_task(self._work(client, task))
                        running.add(work)
                        work.add_done_callback(running.discard)
            finally:
                stopping.cancel()
                await self._shut_down(client, running)

    async def _register(self, client: Any) -> None:
        try:
            await client.register_agent(
                self.agent_name,
                agent_id=self.agent_id,
                capabilities=sorted(self.handlers),
                delivery="pull",
                max_concurrency=self.max_concurrency,
            )
        except ConflictError as exc:
            raise APIError(
                f"Agent '{self.agent_id}' is registered with other details ({exc}); "
                "deregister it or use another id"
            ) from None
        await client.report_state(self.agent_id, "idle")

    async def _work(self, client: Any, task: WorkerTask) -> None:
        self._held.add(task.task_id)
        try:
            await self._run_task(client, task)
        finally:
            self._held.discard(task.task_id)

    async def _run_task(self, client: Any, task: WorkerTask) -> None:
        handler = self.handlers.get(task.capability or "") or self.handlers.get(task.task_name)
        ctx = TaskContext(
            task_id=task.task_id,
            session_id=task.session_id,
            task_name=task.task_name,
            attempt=task.attempt,
            message=task.message,
        )
        if handler is None:
            await self._report(client.fail_claimed(self.agent_id, task.task_id, "no handler"))
            return
        beat = asyncio.create_task(self._keep_lease(client, task, ctx))
        params = dict(task.message.get("payload", {}).get("parameters") or {})
        failure: Exception | None = None
        try:
            result = await _call(handler, params, ctx)
        except Exception as exc:  # the function failed: the attempt fails (and is retried)
            failure = exc
        finally:
            # stopped and waited for however this ends, a shutdown's cancellation included: a
            # heartbeat after the worker reported offline would bring it back online
            beat.cancel()
            await asyncio.wait({beat})
        if failure is not None:
            if not ctx.cancelled.is_set():
                self.failed += 1
                error = f"{type(failure).__name__}: {failure}"
                await self._report(client.fail_claimed(self.agent_id, task.task_id, error))
            return
        if ctx.cancelled.is_set():
            return  # cancelled or lost meanwhile: the result is not ours to give
        self.completed += 1
        await self._report(client.complete_claimed(self.agent_id, task.task_id, result))

    async def _keep_lease(self, client: Any, task: WorkerTask, ctx: TaskContext) -> None:
        every = max(task.lease_seconds / 3, 0.2)
        while True:
            await asyncio.sleep(every)
            try:
                await client.heartbeat_task(self.agent_id, task.task_id)
            except ConflictError:  # cancelled, or the lease ran out: stop
                ctx.cancelled.set()
                return
            except APIConnectionError:
                continue  # the lease outlasts a short outage

    async def _report(self, call: Awaitable[Any]) -> None:
        try:
            await call
        except ConflictError as exc:  # the task moved on (cancelled, lease lost)
            logger.info("result not taken: %s", exc)

    async def _shut_down(self, client: Any, running: set[asyncio.Task[None]]) -> None:
        """Let running tasks finish for a while, then hand back the rest."""
        if running:
            await asyncio.wait(set(running), timeout=self.shutdown_grace)
        held = list(self._held)
        for work in list(running):
            work.cancel()
        if running:  # and their lease-keepers with them, before the offline report
            await asyncio.wait(set(running), timeout=SETTLE_SECONDS)
        # offline first, so nothing new is dispatched here; that also queues again what this
        # worker held, and releasing is for a task the report did not reach
        with contextlib.suppress(APIError):
            await client.report_state(self.agent_id, "offline")
        for task_id in held:
            with contextlib.suppress(APIError):
                await client.release_claimed(self.agent_id, task_id)


async def _call(handler: Handler, params: dict[str, Any], ctx: TaskContext) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(params, ctx)
    return await asyncio.to_thread(handler, params, ctx)
