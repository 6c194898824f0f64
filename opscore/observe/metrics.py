"""Metrics (prometheus-client) and task/run spans, fed by the engine's events.

One ``Telemetry`` per app, with its own registry, so several apps in one process (tests) never
share counters. Gauges that describe the store (queue depth, agents by state) are computed when
``/metrics`` is scraped, not on every change.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from ..models import Agent, Session, TaskRun, TaskStatus
from ..storage.base import Storage
from . import genai
from .activity import Activity
from .runspans import RunSpans
from .store_gauges import StoreGauges, StoreReading
from .tracing import Span, Tracer

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
# set (by `opscore serve` with OPSCORE_PROCESSES above 1) before prometheus-client is imported:
# each process then keeps its values in files there, which a scrape adds up
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


class Telemetry:
    def __init__(self, storage: Storage, tracer: Tracer) -> None:
        self.storage = storage
        self.tracer = tracer
        self.spans = RunSpans(tracer)
        self.activity = Activity()  # the last hour per minute, for the console's charts
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "opscore_http_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.request_latency = Histogram(
            "opscore_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.state_reports = Counter(
            "opscore_state_reports", "Accepted state reports", ["state"], registry=r
        )
        self.held_reports_dropped = Counter(
            "opscore_pending_reports_dropped",
            "State reports for agents that never registered, dropped after the pending window",
            registry=r,
        )
        self.loop_errors = Counter(
            "opscore_background_errors",
            "Failed passes of background loops (dispatcher and sweeps)",
            ["loop"],
            registry=r,
        )
        self.loop_degraded = Gauge(
            "opscore_background_degraded",
            "1 while a background loop's passes keep failing (e.g. the store is away)",
            ["loop"],
            registry=r,
            multiprocess_mode="livemax",  # OPSCORE_PROCESSES: 1 while any process's does
        )
        self.probes = Counter(
            "opscore_agent_probes", "Probes of silent agents' endpoints", ["result"], registry=r
        )
        self.task_outcomes = Counter(
            "opscore_task_outcomes",
            "Task attempt outcomes, skips and decisions",
            ["outcome"],
            registry=r,
        )
        self.usage_tokens = Counter(
            "opscore_usage_tokens",
            "Tokens agents reported with results",
            ["kind", "model"],
            registry=r,
        )
        self.usage_cost = Counter(
            "opscore_usage_cost_usd", "Cost agents reported with results", ["model"], registry=r
        )
        self.dispatch_latency = Histogram(
            "opscore_dispatch_latency_seconds",
            "Time from ready to dispatched",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.handover_latency = Histogram(
            "opscore_dispatch_handover_seconds",
            "HTTP hand-over of a task to AgentKit or the agent",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.task_duration = Histogram(
            "opscore_task_duration_seconds",
            "Time from dispatch to completion",
            buckets=_TASK_BUCKETS,
            registry=r,
        )
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self.runs = Counter(
            "opscore_runs",
            "Workflow runs started (re-drives count again) and ended, by template",
            ["workflow", "status"],
            registry=r,
        )
        self.dispatches = Counter(
            "opscore_dispatches",
            "Hand-overs to agents by transport and answer (accepted, completed, failed, "
            "unreachable, timeout, error)",
            ["transport", "outcome"],
            registry=r,
        )
        self.replicas: Callable[[], int] = lambda: 1  # observe.fleet counts them
        self.store_gauges = StoreGauges()
        r.register(self.store_gauges)

    # --- HTTP ------------------------------------------------------------------------------
    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._request_children.get(key)
        if children is None:  # labels() is a lock and a dict walk; do it once per series
            children = (
                self.requests.labels(method, route, str(status)),
                self.request_latency.labels(method, route),
            )
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    # --- engine events ---------------------------------------------------------------------
    def on_task_event(self, event: str, task: TaskRun, extra: dict[str, Any]) -> None:
        """Metrics and spans for one task event (queued, dispatched, running, ...)."""
        handler = getattr(self, f"_on_{event}", None)
        if handler is not None:
            handler(task, extra)

    def _on_queued(self, task: TaskRun, extra: dict[str, Any]) -> None:
        self.spans.queued(task)

    _on_retry = _on_queued

    def _on_dispatched(self, task: TaskRun, extra: dict[str, Any]) -> None:
        self.spans.dispatched(task)
        if task.ready_at is not None:
            self.dispatch_latency.observe(max(time.time() - task.ready_at.timestamp(), 0.0))

    def dispatch_span(self, task: TaskRun, agent: Agent, endpoint: str | None) -> Span:
        """The span of one hand-over; its id goes to the agent in ``traceparent``."""
        return self.spans.hand_over(task, agent, endpoint)

    def finish_dispatch(self, span: Span, *, ok: bool, outcome: str) -> None:
        if not ok:
            span.attributes[genai.ERROR_TYPE] = outcome
        self.tracer.record(span, status="ok" if ok else "error")
        if span.duration_ms is not None:
            self.handover_latency.observe(span.duration_ms / 1000)

    def _on_running(self, task: TaskRun, extra: dict[str, Any]) -> None:
        return None

    def _on_completed(self, task: TaskRun, extra: dict[str, Any]) -> None:
        self.task_outcomes.labels("completed").inc()
        self.activity.count("completed")
        usage = extra.get("usage")
        if usage:
            model = str(usage.get("model", "-"))
            for kind in ("input", "output"):
                self.usage_tokens.labels(kind, model).inc(usage.get(f"{kind}_tokens", 0))
            self.usage_cost.labels(model).inc(usage.get("cost_usd", 0.0))
        if task.dispatched_at and task.finished_at:
            self.task_duration.observe((task.finished_at - task.dispatched_at).total_seconds())
        self.spans.attempt_ended(task, "ok", outcome="completed", **genai.usage(extra.get("usage")))
        self.spans.task_ended(task, "ok")

    def _on_attempt_failed(self, task: TaskRun, extra: dict[str, Any]) -> None:
        outcome = str(extra.get("outcome", "failed"))
        self.task_outcomes.labels(outcome).inc()
        self.activity.count("failed")
        self.spans.attempt_ended(task, "error", outcome=outcome, error=extra.get("error"))

    def _on_failed(self, task: TaskRun, extra: dict[str, Any]) -> None:
        self.spans.task_ended(task, "error", error=task.error)

    def _on_cancelled(self, task: TaskRun, extra: dict[str, Any]) -> None:
        self.spans.cancelled(task)

    def _on_skipped(self, task: TaskRun, extra: dict[str, Any]) -> None:
        self.task_outcomes.labels("skipped").inc()
        self.spans.task_ended(task, "ok", skipped=task.skip_reason)

    def _on_decided(self, task: TaskRun, extra: dict[str, Any]) -> None:
        """An approval or signal step decided (approved, rejected, signalled, timed_out)."""
        outcome = str(extra.get("outcome", "decided"))
        self.task_outcomes.labels(outcome).inc()
        ok = task.status == TaskStatus.COMPLETED
        self.spans.task_ended(task, "ok" if ok else "error", outcome=outcome, error=task.error)

    # --- runs ------------------------------------------------------------------------------
    def start_run(
        self, session_id: str, trace_id: str, parent_id: str | None, workflow_id: str
    ) -> None:
        self.runs.labels(workflow_id or "-", "started").inc()
        self.spans.run_started(session_id, trace_id, parent_id, workflow_id)

    def end_run(self, session: Session, status: str) -> None:
        self.runs.labels(session.workflow_id or "-", status).inc()
        self.activity.count(f"runs_{status}")
        self.spans.run_ended(session, status)

    async def sample_activity(self, now: datetime) -> None:
        """A sweep: the queue depth into the activity minutes (every few seconds at most)."""
        await self.activity.sample(self.storage.queue_depth)

    # --- scrape ----------------------------------------------------------------------------
    async def render(self) -> bytes:
        now = datetime.now(UTC)
        oldest = await self.storage.oldest_ready_at(now)
        letters = await self.storage.list_dead_letters(offset=0, limit=1)
        # counted by the store: paging through every agent cost a read of the whole fleet
        # per page on Redis (10 of 10,000 agents per scrape) and a parse of each elsewhere
        counts = await self.storage.agents_by_state()
        self.store_gauges.reading = StoreReading(
            queue_depth=await self.storage.queue_depth(),
            dead_letters=letters.total,
            oldest_ready_seconds=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
            replicas=self.replicas(),
            agents_by_state={(state or "unknown"): count for state, count in counts.items()},
        )
        directory = os.environ.get(MULTIPROCESS_DIR)
        if not directory:
            return generate_latest(self.registry)
        # OPSCORE_PROCESSES: every process's counters and histograms, added up
        together = CollectorRegistry()
        multiprocess.MultiProcessCollector(together, path=directory)
        together.register(self.store_gauges)
        return generate_latest(together)
