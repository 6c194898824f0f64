"""CPU per span and per log line: what a task's telemetry costs the process that runs it.

``python -m bench.spans [--count 20000] [--rounds 3]`` records ``--count`` finished spans (an
``invoke_agent`` span of 7 attributes with a parent, as a hand-over leaves) through Ops-Core's
``Tracer.record``, which hands each to the span processors built whole, and, as the peer, the
same spans started and ended through the OpenTelemetry SDK's own tracer with the same ids,
times, processors and attributes, as ``Tracer.record`` did before (``bench/README.md``). Then
``log_operation`` with a task's context, with the JSON console handler writing to /dev/null as
``opscore serve`` sets up logging. Rounds alternate; prints one JSON line: microseconds per
span on each path per round, their medians and the ratio, and microseconds per log line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable

from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)

from opscore.config import Settings
from opscore.observe import genai
from opscore.observe.logs import configure_logging, log_operation
from opscore.observe.tracing import Span, Tracer, _otel_attributes, new_trace_id

ATTRIBUTES = {
    "sessionId": "ae71283a-64db-49de-81f7-1874e4e864c6",
    "taskId": "task-94bfa58c0d9d4b2f99282259a4caf28c",
    "agentId": "fast-5",
    "attempt": 1,
    **genai.invoke_workflow("chain3", "ae71283a-64db-49de-81f7-1874e4e864c6"),
}
PARENT = "00f067aa0ba902b7"


def _span() -> Span:
    return Span(
        name="invoke_agent fast-5",
        trace_id=new_trace_id(),
        parent_id=PARENT,
        attributes=dict(ATTRIBUTES),
        kind=SpanKind.CLIENT,
    )


def _through_the_sdk(tracer: Tracer) -> Callable[[Span], None]:
    """The peer: the span started and ended through the SDK's tracer (its provider's ids
    replaced by the span's own, as the ids a ``traceparent`` carried must be kept)."""
    otel = tracer.provider.get_tracer("opscore")
    ids = tracer.provider.id_generator
    flags = TraceFlags(TraceFlags.SAMPLED)

    def record(span: Span) -> None:
        span.end = time.time()
        trace_id = int(span.trace_id, 16)
        parent = SpanContext(trace_id, int(PARENT, 16), is_remote=True, trace_flags=flags)
        ids.generate_span_id = lambda: int(span.span_id, 16)  # type: ignore[method-assign]
        attributes = _otel_attributes(span.attributes)
        attributes["opscore.status"] = "ok"
        started = otel.start_span(
            span.name,
            context=set_span_in_context(NonRecordingSpan(parent)),
            kind=span.kind,
            attributes=attributes,
            start_time=int(span.start * 1e9),
        )
        started.set_status(Status(StatusCode.OK))
        started.end(end_time=int(span.end * 1e9))

    return record


def _per_call(count: int, call: Callable[[], object]) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tracer = Tracer(max_traces=1000)
    sdk = _through_the_sdk(tracer)
    building = _per_call(args.count, _span)  # taken off both: the spans' own construction
    whole: list[float] = []
    peer: list[float] = []
    for _ in range(args.rounds):
        whole.append(_per_call(args.count, lambda: tracer.record(_span(), status="ok")) - building)
        peer.append(_per_call(args.count, lambda: sdk(_span())) - building)
    tracer.shutdown()

    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        logging._srcfile = None  # as opscore serve runs (opscore/serve.py)
        logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
        configure_logging(Settings())
        context = {"sessionId": ATTRIBUTES["sessionId"], "taskId": ATTRIBUTES["taskId"]}
        context |= {"agentId": "fast-5", "stepId": "b", "attempt": 1}
        lines = [
            _per_call(args.count, lambda: log_operation("task.dispatched", context))
            for _ in range(args.rounds)
        ]
    print(
        json.dumps(
            {
                "spans": args.count,
                "us_per_span_built_whole": [round(v, 2) for v in whole],
                "us_per_span_through_the_sdk_tracer": [round(v, 2) for v in peer],
                "median_ratio": round(statistics.median(whole) / statistics.median(peer), 3),
                "us_per_log_line": [round(v, 2) for v in lines],
            }
        )
    )


if __name__ == "__main__":
    main()
