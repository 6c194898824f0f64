"""Performance tracing: spans with durations and parent/child links, W3C ``traceparent``.

A workflow run is one trace: the trigger request, a ``workflow.run`` span, and under it one
``task`` span per task run with ``task.queued``, ``task.dispatch`` (the HTTP hand-over, whose
``traceparent`` the agent receives) and ``task.run`` children per attempt. Finished spans are
kept in memory, bounded by trace count. ``start_trace(key)``/``end_trace(key)`` open and close
spans across calls (keyed, e.g. by task id); ``span()`` is the context-manager form.
"""

from __future__ import annotations

import contextvars
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
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
        }


class Tracer:
    """Keeps finished spans of the newest ``max_traces`` traces; open spans by key."""

    def __init__(
        self,
        max_traces: int = 2000,
        exporter: Callable[[Span], None] | None = None,
        *,
        max_spans_per_trace: int = 1000,
    ) -> None:
        self.max_traces = max_traces
        # a client may send the same traceparent on every request: one trace must not grow
        # without limit (spans past the bound are counted, not kept)
        self.max_spans_per_trace = max_spans_per_trace
        self.dropped_spans = 0
        self.exporter = exporter
        self._traces: OrderedDict[str, list[Span]] = OrderedDict()
        self._open: dict[str, Span] = {}
        self._lock = threading.Lock()

    def start_trace(
        self,
        key: str,
        name: str,
        *,
        trace_id: str | None = None,
        parent_id: str | None = None,
        start: float | None = None,
        **attributes: Any,
    ) -> Span:
        """Open a span that another call will close with ``end_trace(key)``."""
        span = Span(
            name=name,
            trace_id=trace_id or new_trace_id(),
            parent_id=parent_id,
            start=start if start is not None else time.time(),
            attributes=attributes,
        )
        with self._lock:
            self._open[key] = span
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
        """Store a finished span."""
        if span.end is None:
            span.end = end if end is not None else time.time()
        if status is not None:
            span.status = status
        with self._lock:
            spans = self._traces.get(span.trace_id)
            if spans is None:
                spans = self._traces[span.trace_id] = []
                while len(self._traces) > self.max_traces:
                    self._traces.popitem(last=False)
            if len(spans) >= self.max_spans_per_trace:
                self.dropped_spans += 1
                return
            spans.append(span)
        if self.exporter is not None:
            self.exporter(span)

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
            spans = list(self._traces.get(trace_id, ()))
            spans += [s for s in self._open.values() if s.trace_id == trace_id]
        return [s.to_dict() for s in sorted(spans, key=lambda s: s.start)]


def otel_exporter() -> Callable[[Span], None] | None:
    """Forward finished spans to OpenTelemetry when its SDK is installed and configured
    (``OTEL_EXPORTER_OTLP_ENDPOINT`` etc.); None when it is not installed."""
    try:
        from opentelemetry import trace as otel_trace
    except ImportError:
        return None
    tracer = otel_trace.get_tracer("opscore")

    def export(span: Span) -> None:
        otel_span = tracer.start_span(
            span.name,
            start_time=int(span.start * 1e9),
            attributes={
                "opscore.trace_id": span.trace_id,
                "opscore.span_id": span.span_id,
                **{k: str(v) for k, v in span.attributes.items()},
            },
        )
        otel_span.end(end_time=int((span.end or time.time()) * 1e9))

    return export
