"""Tracing on OpenTelemetry: spans with durations and parent/child links, W3C ``traceparent``.

A workflow run is one trace: the trigger request, an ``invoke_workflow {workflow}`` span, and
under it one ``task`` span per task run with ``task.queued``, ``invoke_agent {agent}`` (the
hand-over, a CLIENT span whose ``traceparent`` the agent receives) and ``task.run`` children per
attempt, named and attributed after the OpenTelemetry GenAI conventions (``genai``).

A ``Span`` here is a cheap builder: ``start_trace(key)``/``end_trace(key)`` open and close one
across calls (keyed, e.g. by task id), ``span()`` is the context-manager form, and a request's
span is dropped unless it is worth keeping. A finished span goes to the OpenTelemetry SDK's span
processors as the SDK's own ``ReadableSpan``, with the very ids it was given, so the
``traceparent`` an agent received names the span an exporter sends. Ours keeps the newest traces in
memory for ``GET /traces/{id}``, the dashboard and run timelines; OTLP export, when asked for
(``export.py``), sends it to Jaeger, Tempo, Langfuse, Phoenix or any collector.
"""

from __future__ import annotations

import contextvars
import json
import os
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    TracerProvider,
    sampling,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from .. import __version__
from .outbox import Outbox

MAX_OPEN = 100_000  # open spans kept (a run's spans may be ended by another replica)
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
_OK = Status(StatusCode.OK)
_UNSET = Status(StatusCode.UNSET)  # neither ok nor error: a cancelled task, say
current_span: contextvars.ContextVar[Span | None] = contextvars.ContextVar(
    "opscore_span", default=None
)


def new_trace_id() -> str:
    # Trace ids need uniqueness, not secrecy: getrandbits costs a fraction of a urandom call.
    return f"{random.getrandbits(128):032x}"


def new_span_id() -> str:
    return f"{random.getrandbits(64):016x}"


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """(trace_id, parent_span_id) from a W3C traceparent header, or None if malformed."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return match.group(1), match.group(2)


def traceparent(trace_id: str, span_id: str) -> str:
    return f"00-{trace_id}-{span_id}-01"


@dataclass
class Span:
    name: str
    trace_id: str
    span_id: str = field(default_factory=new_span_id)
    parent_id: str | None = None
    start: float = field(default_factory=time.time)
    end: float | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    kind: SpanKind = SpanKind.INTERNAL

    @property
    def duration_ms(self) -> float | None:
        return None if self.end is None else round((self.end - self.start) * 1000, 3)

    def to_dict(self) -> dict[str, Any]:
        return {
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentId": self.parent_id,
            "name": self.name,
            "start": datetime.fromtimestamp(self.start, UTC).isoformat(),
            "end": datetime.fromtimestamp(self.end, UTC).isoformat() if self.end else None,
            "durationMs": self.duration_ms,
            "status": self.status,
            "attributes": self.attributes,
            "kind": self.kind.name,
        }


class Tracer:
    """Open spans by key; finished ones go through the OpenTelemetry SDK, whose processors
    keep the newest ``max_traces`` traces here (``_Buffer``) and export them when asked."""

    def __init__(
        self,
        max_traces: int = 2000,
        *,
        max_spans_per_trace: int = 1000,
        processors: Sequence[SpanProcessor] = (),
    ) -> None:
        self.max_traces = max_traces
        # a client may send the same traceparent on every request: one trace must not grow
        # without limit (spans past the bound are counted, not kept)
        self.max_spans_per_trace = max_spans_per_trace
        self.dropped_spans = 0
        self._traces: OrderedDict[str, list[ReadableSpan | dict[str, Any]]] = OrderedDict()
        # with a shared store, this process's spans also go to the other replicas
        # (observe.fleet); None while there is no one to tell
        self.outbox: Outbox[ReadableSpan] | None = None
        self._open: dict[str, Span] = {}
        self._lock = threading.Lock()
        self._processors = SynchronousMultiSpanProcessor()
        # one provider per app (not the global one): several apps in one process (tests)
        # never see each other's spans. Its sampler (OTEL_TRACES_SAMPLER), span limits
        # (OTEL_SPAN_ATTRIBUTE_*) and OTEL_SDK_DISABLED hold for the spans built in record().
        self.provider = TracerProvider(
            resource=Resource.create(
                {
                    # OTEL_SERVICE_NAME names the service, as everywhere in OpenTelemetry
                    "service.name": os.environ.get("OTEL_SERVICE_NAME") or "opscore",
                    "service.version": __version__,
                }
            ),
            active_span_processor=self._processors,
        )
        self.provider.add_span_processor(_Buffer(self))
        for processor in processors:
            self.provider.add_span_processor(processor)
        self._scope = InstrumentationScope("opscore", __version__)
        self._limits = SpanLimits()
        self._enabled = os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"

    def shutdown(self) -> None:
        """Flush and stop the exporters (at the app's shutdown)."""
        self.provider.shutdown()

    def start_trace(
        self,
        key: str,
        name: str,
        *,
        trace_id: str | None = None,
        parent_id: str | None = None,
        start: float | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        span_id: str | None = None,
        **attributes: Any,
    ) -> Span:
        """Open a span that another call will close with ``end_trace(key)``. A span that
        another replica ends is never closed here: past ``MAX_OPEN`` the oldest are dropped."""
        span = Span(
            name=name,
            trace_id=trace_id or new_trace_id(),
            span_id=span_id or new_span_id(),
            parent_id=parent_id,
            start=start if start is not None else time.time(),
            attributes=attributes,
            kind=kind,
        )
        with self._lock:
            self._open[key] = span
            while len(self._open) > MAX_OPEN:
                self._open.pop(next(iter(self._open)))
        return span

    def get_open(self, key: str) -> Span | None:
        return self._open.get(key)

    def end_trace(self, key: str, *, status: str = "ok", **attributes: Any) -> Span | None:
        """Close the span opened under ``key``; None if there is none (already closed)."""
        with self._lock:
            span = self._open.pop(key, None)
        if span is not None:
            span.attributes.update(attributes)
            self.record(span, status=status)
        return span

    def record(self, span: Span, *, status: str | None = None, end: float | None = None) -> None:
        """Finish a span: hand it, under its own ids and parent, to the SDK's span processors.

        Built as the SDK's own finished span (``ReadableSpan``), not started and ended through
        its tracer: every span here is whole before the SDK sees it (its ids were fixed
        beforehand, derived from the run's records or sent to an agent in a ``traceparent``;
        its times are known). The SDK's live-span path (a mutable span, its locks, attributes
        checked one by one, start and end) cost 24 us per span against 6.5 (``bench/spans.py``),
        about 10% of a busy replica's CPU at 14 spans per three-step run. What that path
        decides still holds: the provider's sampler, its span limits, ``OTEL_SDK_DISABLED``;
        processors get ``on_end`` (ours keep no ``on_start``).
        """
        if span.end is None:
            span.end = end if end is not None else time.time()
        if status is not None:
            span.status = status
        if not self._enabled:
            return
        trace_id = int(span.trace_id, 16)
        parent = None
        if span.parent_id is not None:
            parent = SpanContext(
                trace_id, int(span.parent_id, 16), is_remote=True, trace_flags=_SAMPLED
            )
        attributes = _otel_attributes(span.attributes)
        attributes["opscore.status"] = span.status
        sampled = self._sample(span, trace_id, parent, attributes)
        if sampled is None:
            return
        flags, trace_state = sampled
        self._processors.on_end(
            ReadableSpan(
                span.name,
                SpanContext(
                    trace_id,
                    int(span.span_id, 16),
                    is_remote=False,
                    trace_flags=flags,
                    trace_state=trace_state,
                ),
                parent,
                self.provider.resource,
                self._bounded(attributes),
                kind=span.kind,
                status=_status(span),
                start_time=int(span.start * 1e9),
                end_time=int(span.end * 1e9),
                instrumentation_scope=self._scope,
            )
        )

    def _sample(
        self, span: Span, trace_id: int, parent: SpanContext | None, attributes: dict[str, Any]
    ) -> tuple[TraceFlags, TraceState | None] | None:
        """The provider's sampler's decision (None: not recorded), its attributes added. The
        default (parent-based, always on) samples every span here: their parents are sampled
        (``traceparent`` flags are not read), so it is not asked."""
        sampler = self.provider.sampler
        if sampler is sampling.DEFAULT_ON:
            return _SAMPLED, None
        context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
        result = sampler.should_sample(context, trace_id, span.name, span.kind, attributes)
        if not result.decision.is_recording():
            return None
        if result.attributes:
            attributes.update(result.attributes)
        return (_SAMPLED if result.decision.is_sampled() else _NOT_SAMPLED), result.trace_state

    def _bounded(self, attributes: dict[str, Any]) -> dict[str, Any] | BoundedAttributes:
        """The attributes within the span limits, as the SDK bounds them; as they are when
        no limit bites (the usual case: 128 attributes of any length)."""
        limits = self._limits
        count = limits.max_span_attributes
        length = limits.max_span_attribute_length
        if length is None and (count is None or len(attributes) <= count):
            return attributes
        return BoundedAttributes(count, attributes, immutable=True, max_value_len=length)

    def _keep(self, trace_id: str, span: ReadableSpan | dict[str, Any]) -> None:
        """Called by ``_Buffer`` for every finished span, and by ``ingest``."""
        with self._lock:
            if self.outbox is not None and not isinstance(span, dict):
                self.outbox.add(span)
            spans = self._traces.get(trace_id)
            if spans is None:
                spans = self._traces[trace_id] = []
                while len(self._traces) > self.max_traces:
                    self._traces.popitem(last=False)
            if len(spans) >= self.max_spans_per_trace:
                self.dropped_spans += 1
                return
            spans.append(span)

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[Span]:
        """A child of the current span (or a new trace), recorded when the block ends."""
        parent = current_span.get()
        span = Span(
            name=name,
            trace_id=parent.trace_id if parent else new_trace_id(),
            parent_id=parent.span_id if parent else None,
            attributes=attributes,
        )
        token = current_span.set(span)
        try:
            yield span
        except BaseException:
            span.status = "error"
            raise
        finally:
            current_span.reset(token)
            self.record(span)

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Finished and still-open spans of a trace, by start time."""
        with self._lock:
            finished = list(self._traces.get(trace_id, ()))
            still_open = [s.to_dict() for s in self._open.values() if s.trace_id == trace_id]
        shaped = [s if isinstance(s, dict) else as_dict(s) for s in finished]
        # a span another replica ended may still be open here (it was opened here)
        done = {s["spanId"] for s in shaped}
        still_open = [s for s in still_open if s["spanId"] not in done]
        return sorted(shaped + still_open, key=lambda s: s["start"])

    def ingest(self, spans: list[dict[str, Any]]) -> None:
        """Spans another replica finished (``observe.fleet``), as the trace API shows them."""
        for span in spans:
            self._keep(str(span["traceId"]), span)


class _Buffer(SpanProcessor):
    """The span processor behind the built-in trace API: every finished span, as the API
    shows it, into the tracer's bounded memory."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer

    def on_end(self, span: ReadableSpan) -> None:
        # kept as the SDK gave it; shaped for the API only when someone reads the trace
        context = span.get_span_context()
        if context is not None and span.start_time is not None:
            self.tracer._keep(f"{context.trace_id:032x}", span)


def as_dict(span: ReadableSpan) -> dict[str, Any]:
    """A finished span as the trace API shows it."""
    context = span.get_span_context()
    assert context is not None  # kept spans all have one (_Buffer.on_end)
    start = (span.start_time or 0) / 1e9
    end = span.end_time / 1e9 if span.end_time is not None else None
    attributes = dict(span.attributes or {})
    status = str(attributes.pop("opscore.status", "ok"))
    return {
        "traceId": f"{context.trace_id:032x}",
        "spanId": f"{context.span_id:016x}",
        "parentId": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "start": datetime.fromtimestamp(start, UTC).isoformat(),
        "end": datetime.fromtimestamp(end, UTC).isoformat() if end else None,
        "durationMs": round((end - start) * 1000, 3) if end else None,
        "status": status,
        "attributes": attributes,
    }


def _status(span: Span) -> Status:
    if span.status == "error":
        return Status(StatusCode.ERROR, str(span.attributes.get("error") or ""))
    return _OK if span.status == "ok" else _UNSET


def _otel_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """OpenTelemetry takes str, bool, int, float (or lists of one of them): anything else is
    sent as JSON, None is left out."""
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        if isinstance(value, str | bool | int | float):
            out[key] = value
        else:
            out[key] = json.dumps(value, default=str)
    return out
