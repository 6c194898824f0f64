"""Wires settings, storage, services and the dispatcher together for one app instance."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from opentelemetry.sdk.trace import SpanProcessor

from .config import Settings
from .dispatch.cancels import CancelNotifier
from .dispatch.dispatcher import Dispatcher
from .dispatch.pull import RoutingTransport
from .dispatch.transports import HttpTransport, SenderThread, Transport
from .events import DeliverySender, EventBus, SubscriptionService
from .lifecycle import AgentRegistry, AgentStates, Liveness
from .models import Agent, StateRecord, TaskRun
from .observe.export import span_processors as exporting_processors
from .observe.fleet import FleetTelemetry
from .observe.logs import LogBuffer
from .observe.metrics import Telemetry
from .observe.tracing import Tracer
from .security.keys import KeyStore
from .security.ratelimit import RateLimiter
from .security.webhook import WebhookVerifier
from .storage import storage_from_url
from .storage.base import SharedTelemetry, Storage
from .workflow import Workflow, build_workflow
from .workflow.inflight_sweeps import InflightSweeps
from .workflow.timeline import RunTimelines
from .workflow.transitions import INFLIGHT_TASK

logger = logging.getLogger("opscore")


@dataclass
class Services:
    """Everything one app instance holds; routes reach their service through it."""

    settings: Settings
    storage: Storage
    keys: KeyStore
    webhook: WebhookVerifier | None
    agents: AgentRegistry
    states: AgentStates
    workflow: Workflow
    dispatcher: Dispatcher
    liveness: Liveness
    transport: Transport
    rate_limiter: RateLimiter
    logs: LogBuffer
    telemetry: Telemetry
    timelines: RunTimelines
    subscriptions: SubscriptionService
    events: EventBus
    event_sender: DeliverySender
    cancels: CancelNotifier
    fleet: FleetTelemetry | None = None
    extras: dict[str, object] = field(default_factory=dict)

    async def start(self) -> None:
        """Open the store, load template files, recover interrupted runs, start dispatching."""
        await self.storage.open()
        if self.fleet is not None:
            self.fleet.start()
        directory = self.settings.workflows_dir
        if directory is not None:
            count = await self.workflow.templates.load_directory(directory)
            logger.info("templates loaded", extra={"count": count, "directory": str(directory)})
        await self.workflow.recover()
        if self.settings.dispatcher_enabled:
            self.dispatcher.start()
            self.event_sender.start()
        logger.info(
            "Ops-Core started",
            extra={
                "storage": self.settings.storage_url.split("://")[0],
                "dispatch": self.settings.dispatch_via,
            },
        )

    async def stop(self) -> None:
        """Stop dispatching, close connections to agents, close the store."""
        await self.dispatcher.stop()
        await self.workflow.a2a.close()
        await self.event_sender.stop()
        await self.cancels.close()
        await self.liveness.close()
        await self.transport.close()
        if self.fleet is not None:
            await self.fleet.stop()
        await self.storage.close()
        self.telemetry.tracer.shutdown()  # flushes the span exporters


def build_services(
    settings: Settings,
    logs: LogBuffer,
    *,
    storage: Storage | None = None,
    transport: Transport | None = None,
    span_processors: Sequence[SpanProcessor] = (),
) -> Services:
    """Everything one app instance needs; raises ConfigError on a bad configuration.
    ``span_processors`` see every finished span besides the configured exporters (tests)."""
    storage = storage or storage_from_url(
        settings.storage_url, finished_session_limit=settings.session_retention
    )
    keys = KeyStore(settings)
    webhook = (
        WebhookVerifier(settings.webhook_secret, settings.webhook_tolerance_seconds)
        if settings.webhook_secret
        else None
    )
    telemetry = Telemetry(
        storage,
        Tracer(
            settings.trace_buffer_size,
            processors=[*exporting_processors(settings), *span_processors],
        ),
    )
    agents = AgentRegistry(storage)
    states = AgentStates(storage, settings, agents)
    workflow = build_workflow(storage, settings, agents, states, telemetry=telemetry)

    async def count_state(agent: Agent, record: StateRecord) -> None:
        telemetry.state_reports.labels(record.state).inc()

    states.state_listeners.append(count_state)
    if transport is None:
        via_agentkit = settings.agentkit_api_url if settings.dispatch_via == "agentkit" else None
        transport = HttpTransport(via_agentkit, connect_timeout=settings.dispatch_timeout)
        if settings.dispatch_thread:
            transport = SenderThread(transport)
    # pull workers claim their tasks: the hand-over to them sends nothing; A2A agents get
    # SendMessage
    a2a = workflow.a2a
    transport = RoutingTransport(
        transport, workflow.workers.inbox, a2a=a2a.clients, tokens=a2a.tokens
    )
    cancels = CancelNotifier(storage, transport, timeout=settings.dispatch_timeout, a2a=a2a.clients)
    workflow.engine.cancel_listeners.append(cancels.notify)
    liveness = Liveness(
        storage,
        settings,
        states,
        on_dropped_reports=telemetry.held_reports_dropped.inc,
        on_probe=lambda ok: telemetry.probes.labels("answered" if ok else "no_answer").inc(),
    )
    workflow.handovers.unreachable_listeners.append(
        lambda agent_id: liveness.record_probe(agent_id, False)
    )
    limits = workflow.engine.limits

    async def in_flight(task_id: str) -> bool:
        task = await storage.get_task(task_id)
        return task is not None and task.status in INFLIGHT_TASK

    limits.in_flight = in_flight
    dispatcher = Dispatcher(
        storage,
        settings,
        transport,
        workflow.handovers,
        wakeup=workflow.engine.wakeup,
        available_states=frozenset(settings.dispatchable_states),
        sweeps=[
            # one read of the tasks in flight per round, for the four sweeps that need them
            InflightSweeps(
                storage,
                [
                    workflow.outcomes.sweep_timeouts,
                    workflow.decisions.sweep,
                    workflow.workers.sweep,
                    workflow.a2a.sweep,
                ],
            ),
            workflow.schedules.sweep,
            workflow.admissions.sweep,
            liveness.sweep,
            workflow.retention.sweep,
            limits.sweep,
            telemetry.sample_activity,
        ],
        limits=limits,
        budgets=workflow.usage.gate,
        telemetry=telemetry,
    )
    dispatcher.reconcile_hooks.append(workflow.recover)
    workflow.outcomes.answers_held = lambda: dispatcher.recording
    # work queued by another replica wakes this dispatcher at once
    storage.set_queue_listener(lambda: workflow.engine.notify_dispatcher(capacity=False))
    subscriptions, events, event_sender = _events(storage, settings, workflow, states)
    rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    fleet = None
    if isinstance(storage, SharedTelemetry):  # replicas share logs, spans and the rate limit
        fleet = FleetTelemetry(storage, logs, telemetry.tracer)
        rate_limiter.replicas = telemetry.replicas = fleet.replicas
        # tasks go first to the agents that report here (dispatch/affinity.py)
        affinity = dispatcher.picker.affinity
        affinity.replicas = fleet.replicas

        async def reported_here(agent: Agent, record: StateRecord) -> None:
            affinity.wrote(agent)

        states.state_listeners.append(reported_here)
    return Services(
        settings=settings,
        storage=storage,
        keys=keys,
        webhook=webhook,
        agents=agents,
        states=states,
        workflow=workflow,
        dispatcher=dispatcher,
        liveness=liveness,
        transport=transport,
        rate_limiter=rate_limiter,
        fleet=fleet,
        logs=logs,
        telemetry=telemetry,
        timelines=RunTimelines(workflow.engine, logs=logs, tracer=telemetry.tracer),
        subscriptions=subscriptions,
        events=events,
        event_sender=event_sender,
        cancels=cancels,
    )


def _events(
    storage: Storage, settings: Settings, workflow: Workflow, states: AgentStates
) -> tuple[SubscriptionService, EventBus, DeliverySender]:
    """Events out: subscriptions, the bus the workflow and the agents' presence publish to,
    and the sender that delivers."""
    subscriptions = SubscriptionService(storage, settings)
    bus = EventBus(storage, settings, subscriptions)
    sender = DeliverySender(storage, settings, subscriptions)
    subscriptions.on_change = bus.forget
    subscriptions.wake_sender = bus.wake_sender = sender.wake
    workflow.engine.publish = bus.publish

    async def approval_needed(task: TaskRun) -> None:
        if task.kind == "approval":
            await bus.publish("approval.needed", await workflow.decisions.describe(task))

    async def presence(event: str, agent: Agent, reason: str) -> None:
        await bus.publish(
            event, {"agentId": agent.agent_id, "agentName": agent.agent_name, "reason": reason}
        )

    workflow.engine.wait_listeners.append(approval_needed)
    states.presence_listeners.append(presence)
    return subscriptions, bus, sender
