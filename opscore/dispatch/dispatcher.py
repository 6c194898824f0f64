"""The loop that matches ready tasks to available agents, and runs the periodic sweeps.

It sleeps until something could change the answer (a task queued, an agent freed or reporting
idle) or until the next delayed task is due, so an idle service costs nothing.

Dispatch sits below the workflow and lifecycle rooms: it knows queues, agents and transports,
not runs. What a hand-over means for a task is the workflow's business, reached through the
``DispatchHooks`` protocol (``hooks.py``); the sweeps (timeouts, liveness) are callables
those rooms register. Started attempts are sent and their outcomes written by ``delivery.py``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta

from ..config import Settings
from ..errors import NoFreeSlotError, StorageError
from ..models import Agent, QueueEntry, TaskRun, TaskStatus, utcnow
from ..observe.metrics import Telemetry
from ..storage.base import Storage
from .budgets import BudgetGate
from .delivery import MAX_BACKOFF, MIN_BACKOFF, Deliveries
from .hooks import DispatchHooks
from .limits import CapabilityLimits
from .picker import AgentPicker
from .slots import FreeSlots, PassFleet
from .transports import Transport
from .wakeup import Wakeup

logger = logging.getLogger("opscore.dispatcher")
BATCH = 256
# While entries in a chunk find no agent (their capability is busy), the next chunk of the
# queue is this many times larger (per free slot), so a long mixed backlog costs few reads.
CHUNK_GROWTH = 4

Sweep = Callable[[datetime], Awaitable[None]]


async def run_sweep(sweep: Callable[..., Awaitable[None]], *args: object) -> None:
    """One sweep. A store that is away fails the whole pass (it backs off); any other failure
    is logged and passed over, so one broken sweep never starves the others or dispatch."""
    try:
        await sweep(*args)
    except StorageError:
        raise
    except Exception:
        logger.exception("sweep %s failed", getattr(sweep, "__qualname__", sweep))


class _NotQueuedError(Exception):
    """The task moved on (cancelled, handled by another replica) while an agent was found."""


async def place_all(
    place: Callable[[QueueEntry], Awaitable[str]], entries: list[QueueEntry], *, together: bool
) -> list[str | BaseException]:
    """Each entry's outcome (``Dispatcher._place``), or what it raised. On a store whose
    writes cost less together (``Storage.writes_together``: Redis), the entries are placed at
    once, so their attempts' writes go out together; elsewhere one after the other
    (PostgreSQL: a statement each either way, and passes that end sooner coalesce fewer
    wake-ups: 0.45 statements more per workflow, measured)."""
    if together:
        return list(await asyncio.gather(*map(place, entries), return_exceptions=True))
    placed: list[str | BaseException] = []
    for entry in entries:
        try:
            placed.append(await place(entry))
        except Exception as exc:
            placed.append(exc)
            break  # the store is away: the pass fails (as for any entry), no more writes
    return placed


class Dispatcher:
    """Matches ready tasks to free agent slots and hands them over; runs the sweeps."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        transport: Transport,
        hooks: DispatchHooks,
        *,
        wakeup: Wakeup,
        available_states: Collection[str],
        sweeps: list[Sweep] | None = None,
        telemetry: Telemetry | None = None,
        clock: Callable[[], datetime] = utcnow,
        limits: CapabilityLimits | None = None,
        budgets: BudgetGate | None = None,
    ) -> None:
        self.storage = storage
        self.limits = limits or CapabilityLimits(storage)
        self.budgets = budgets or BudgetGate(storage)
        self.picker = AgentPicker(self.limits, self.budgets)
        self.settings = settings
        self.hooks = hooks
        self.wakeup = wakeup
        self.available_states = available_states
        self.sweeps = sweeps if sweeps is not None else []
        self.telemetry = telemetry
        self.clock = clock
        # Ready entries that earlier passes examined and found no free agent for: the next pass
        # starts after them, so a backlog longer than a batch cannot hide work for a free agent.
        self._scan_from = 0
        # the last look found work queued and every agent slot taken: passes woken only by
        # more work skip the store until a slot is freed here (capacity=True) or a dispatch
        # interval passes without a wakeup (a slot freed by another replica)
        self._full = False
        # agent slots the last look left free: the next first look claims as many entries
        # (one at least), so a pass that finds fewer than that knows the queue is empty
        # without asking again (a second claim per step on an idle service, measured)
        self._free_seen = 0
        self.deliveries = Deliveries(transport, hooks, telemetry=telemetry, clock=clock)
        self._loop_task: asyncio.Task[None] | None = None
        self._last_sweep: datetime | None = None
        self._problem: str | None = None
        # run after the store was away: what a write cut in half left behind is put right
        self.reconcile_hooks: list[Callable[[], Awaitable[object]]] = []
        self._reconcile = False

    # --- lifecycle of the loop --------------------------------------------------------------
    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="opscore-dispatcher")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            done, _ = await asyncio.wait({self._loop_task}, timeout=5)
            if not done:
                logger.error("dispatcher did not stop within 5s; abandoning it")
            self._loop_task = None
        await self.deliveries.stop()

    @property
    def recording(self) -> set[str]:
        """Tasks whose hand-over answer is being written (kept while the store is away)."""
        return self.deliveries.recording

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    @property
    def status(self) -> str:
        """``ok``, ``stopped``, or what is wrong while passes keep failing (``/ready``)."""
        if not self.running:
            return "stopped"
        return self._problem or "ok"

    async def _run(self) -> None:
        """Pass after pass, for ever. Any exception (a store that went away, a bug) is logged
        once per outage, answered with a growing pause (up to MAX_BACKOFF seconds), and the loop
        resumes by itself when passes succeed again: nothing but a stop ends it."""
        failures = 0
        while True:
            try:
                busy = await self.tick()
                if not busy:
                    await self._sleep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self._failed(exc, failures)
                await asyncio.sleep(min(MIN_BACKOFF * 2 ** (failures - 1), MAX_BACKOFF))
                continue
            if failures:
                logger.warning("dispatcher recovered", extra={"failedPasses": failures})
                failures, self._problem = 0, None
                self._reconcile = True
                if self.telemetry is not None:
                    self.telemetry.loop_degraded.labels("dispatcher").set(0)
            if busy:
                await asyncio.sleep(0)

    def _failed(self, exc: Exception, failures: int) -> None:
        self._problem = f"degraded: {type(exc).__name__}: {str(exc)[:200]}"
        if self.telemetry is not None:
            self.telemetry.loop_errors.labels("dispatcher").inc()
            self.telemetry.loop_degraded.labels("dispatcher").set(1)
        if failures == 1:
            logger.exception("dispatcher pass failed; retrying with backoff until it succeeds")
        elif failures % 100 == 0:
            logger.error("dispatcher still failing", extra={"failedPasses": failures})

    async def _sleep(self) -> None:
        if not await self.wakeup.sleep(self.settings.dispatch_interval, self._due_in):
            self._full = False  # an interval without news: look at the agents again

    async def _due_in(self) -> float | None:
        """Seconds until the next delayed entry is due (None: none is waiting)."""
        next_ready = await self.storage.next_ready_at(self.clock())
        return None if next_ready is None else (next_ready - self.clock()).total_seconds()

    def request_reconcile(self) -> None:
        """Ask for the reconcile hooks to run on the next pass that the store allows."""
        self._reconcile = True

    async def tick(self) -> bool:
        """One pass: dispatch what can go now, and sweep timeouts and liveness when due.

        Returns True when a full batch went out (there may be more right away).
        """
        if self._reconcile:
            for hook in self.reconcile_hooks:
                await hook()  # a failure leaves the flag set: the next pass tries again
            self._reconcile = False
        now = self.clock()
        sent = await self.dispatch_ready(now)
        sweep_every = timedelta(seconds=min(self.settings.dispatch_interval, 1.0))
        if self._last_sweep is None or now - self._last_sweep >= sweep_every:
            self._last_sweep = now
            for sweep in self.sweeps:
                await run_sweep(sweep, now)
        return sent >= BATCH

    # --- matching ---------------------------------------------------------------------------
    async def dispatch_ready(self, now: datetime) -> int:
        """Hand ready tasks to available agents; tasks with no agent go back in order.

        The queue is read in small chunks until the free agent slots are used up (or a batch
        was examined), so a pass costs in proportion to what can be sent, not to the backlog
        waiting for busy agents. A pass that used its batch with agents still free leaves a
        cursor: the next one passes over what was examined and looks further, until the end
        of the queue, then starts from the head again.
        """
        if self._full and not self.wakeup.capacity:
            return 0  # every slot was taken at the last look, and none has been freed since
        # a slot freed from here on calls for another look, even one freed while the reads
        # below wait for the store: those may already be out of date
        self.wakeup.capacity = False
        first = 1 if self._scan_from else max(1, min(self._free_seen, BATCH))
        entries, agents = await self._first_look(now, first)
        if not entries:
            self._scan_from = 0
            self._full = False
            return 0  # the common case when agents report idle: nothing to do, no agent scan
        if agents is None:
            agents = await self.storage.available_agents(self.available_states)
        # slots left to other replicas looked for only with others up (a fleet of thousands)
        affinity = self.picker.affinity
        left = affinity.left_to_another if affinity.replicas() > 1 else None
        free = FreeSlots(agents, left, now, enough=BATCH + 1)
        if free.total <= 0:  # every agent busy: leave the backlog alone
            await self.storage.requeue(entries)
            self._scan_from = self._free_seen = 0
            self._full = True
            return 0
        self._full = False
        passed_over: list[QueueEntry] = []
        if self._scan_from:
            passed_over = list(entries)
            if self._scan_from > 1:
                passed_over += await self._claim(now, self._scan_from - 1)
            entries = await self._claim(now, 1)
            if len(passed_over) < self._scan_from or not entries:
                # the queue ends before the cursor: start from the head, next pass
                await self.storage.requeue(passed_over + entries)
                self._scan_from = 0
                return 0
        fleet = PassFleet(agents, free)
        waiting: list[QueueEntry] = []
        handled: list[str] = []
        sent = examined = 0
        asked, growth = first, 1
        # The pass's only entry (fewer than asked for: the queue held no more; an idle
        # service's every pass) is acknowledged with the write that starts its attempt, so no
        # ack waits after its hand-over. A pass of several acknowledges them together at its
        # end: one write for all, where one per start costs more (3 Redis commands each).
        alone = len(entries) == 1 < asked
        while True:
            unplaced = len(waiting)
            place = functools.partial(self._place, now=now, fleet=fleet, ack=alone)
            placed = await place_all(place, entries, together=self.storage.writes_together)
            for entry, outcome in zip(entries, placed, strict=False):
                if isinstance(outcome, BaseException):
                    raise outcome  # the store is away: the pass fails, the leases run out
                examined += outcome != "unread"  # a pass reads at most BATCH entries
                if outcome in ("waiting", "unread"):
                    waiting.append(entry)
                    continue
                sent += outcome == "sent"
                if outcome == "handled" or not alone:
                    handled.append(entry.task_id)
            capacity = free.total
            more = len(entries) >= asked
            if capacity <= 0 or examined >= BATCH or not more:
                break
            if len(waiting) > unplaced:  # this chunk held work for busy capabilities
                growth *= CHUNK_GROWTH
            # as many entries as there are free slots (no put-backs when any agent takes any
            # task), more while entries keep waiting for busy capabilities
            asked = min(BATCH - examined, capacity * growth)
            entries = await self._claim(now, asked)
        looked_far_enough = capacity <= 0 or not more
        self._scan_from = 0 if looked_far_enough else len(passed_over) + len(waiting)
        if passed_over or waiting:
            await self.storage.requeue(passed_over + waiting)
        if handled:
            await self.storage.ack(handled)
        self._free_seen = max(capacity, 0)
        return sent

    async def _place(
        self, entry: QueueEntry, now: datetime, fleet: PassFleet, *, ack: bool = False
    ) -> str:
        """Start the entry's task on an agent with a free slot (``ack``: its entry
        acknowledged in the same write) and hand it over: "sent";
        "handled" when it is dropped (cancelled, handled meanwhile, refused by its budget);
        "waiting" when no agent takes it now; "unread" when every slot was taken first."""
        if fleet.free.total <= 0:
            return "unread"  # every slot taken: it waits, unread
        task = entry.task if entry.read else await self.storage.get_task(entry.task_id)
        if task is None or task.status != TaskStatus.QUEUED:
            return "handled"  # cancelled or already handled: drop it
        verdict, reason = await self.budgets.check_task(task, now)
        if verdict == "fail":  # its workflow's budget is spent and says fail
            await self.hooks.budget_refused(task, reason)
            return "handled"
        if verdict != "go":
            return "waiting"
        start = functools.partial(self._start, task, now, ack=ack)
        try:
            picked = await self.picker.pick(task, fleet, now, start)
        except _NotQueuedError:  # cancelled or handled meanwhile: drop it
            return "handled"
        if picked is None:
            return "waiting"
        agent, dispatched = picked
        self.deliveries.hand_over(dispatched, agent)
        return "sent"

    async def _claim(self, now: datetime, limit: int) -> list[QueueEntry]:
        """Up to ``limit`` ready entries; with other replicas up, each with the row its
        task's completion may write along (``Storage.dequeue_ready``'s ``follows``)."""
        follows = self.picker.affinity.replicas() > 1
        return await self.storage.dequeue_ready(now, limit, follows=follows)

    async def _first_look(
        self, now: datetime, limit: int
    ) -> tuple[list[QueueEntry], list[Agent] | None]:
        """The head of the queue (``limit`` entries at most); and the available agents, read
        in the same turn (one round trip, not two, before the hand-over) when this process
        just queued work, so the queue is very likely not empty. Otherwise the agents are
        read only once an entry is there (None here): most passes, woken by an idle report,
        find no work."""
        if not self.wakeup.queued:
            return await self._claim(now, limit), None
        self.wakeup.queued = False
        entries, agents = await asyncio.gather(
            self._claim(now, limit),
            self.storage.available_agents(self.available_states),
        )
        return entries, agents

    async def _start(
        self, task: TaskRun, now: datetime, agent: Agent, *, ack: bool
    ) -> TaskRun | None:
        """Start an attempt of ``task`` on ``agent``, one of its slots taken (and with
        ``ack`` its queue entry acknowledged) in the same write: the task as started, or
        None when the agent has no slot free (another replica took it); _NotQueuedError when
        the task is no longer queued."""
        try:
            dispatched = await self.hooks.mark_dispatched(task, agent, now, ack_entry=ack)
        except NoFreeSlotError:
            return None
        if dispatched is None:
            raise _NotQueuedError(task.task_id)
        return dispatched
