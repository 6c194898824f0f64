"""Spans through OpenTelemetry: a whole run as the SDK sees it (names, GenAI attributes, kinds,
parent links, the ids the agent received), OTLP export to a real receiver on loopback, and a
clear start-up error when export is asked for without its extra."""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from opscore.api import create_app
from opscore.errors import ConfigError

from .conftest import KEY, make_settings
from .fakes import FakeFleet
from .servers import ServerThread, wait_for
from .workflow_helpers import create, run, settle, task, template

H = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def traced(server_factory):
    exporter = InMemorySpanExporter()
    server = server_factory(make_settings(), span_processors=[SimpleSpanProcessor(exporter)])
    fleet = FakeFleet(server.url, KEY).start()
    with httpx.Client(base_url=server.url, headers=H, timeout=10) as client:
        yield client, fleet, exporter
    fleet.stop()


def test_a_run_is_an_invoke_workflow_trace_of_invoke_agent_client_spans(traced) -> None:
    client, fleet, exporter = traced
    fleet.add("writer-1")
    create(client, template("essay", task("draft", nextTaskId="edit"), task("edit")))
    sid = run(client, "essay")
    detail = settle(client, sid)
    assert detail["status"] == "completed"
    wait_for(lambda: sum(s.name == "task" for s in exporter.get_finished_spans()) == 2)
    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    trace_ids = {s.context.trace_id for s in spans}
    assert trace_ids == {int(detail["traceId"], 16)}  # one trace: the run's

    run_span = next(s for s in spans if s.name == "invoke_workflow essay")
    assert run_span.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert run_span.attributes["gen_ai.agent.name"] == "essay"
    assert run_span.attributes["gen_ai.conversation.id"] == sid
    assert run_span.status.status_code == StatusCode.OK
    request = by_id[run_span.parent.span_id]  # the trigger request started the run
    assert request.name == "POST /v1/opscore/workflows/{workflowId}/runs"

    invocations = [s for s in spans if s.name == "invoke_agent writer-1"]
    assert len(invocations) == 2
    port = urlsplit(fleet.endpoint("writer-1")).port
    for span in invocations:
        assert span.kind == SpanKind.CLIENT
        assert span.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert span.attributes["gen_ai.agent.id"] == "writer-1"
        assert span.attributes["gen_ai.agent.name"] == "writer-1"
        assert span.attributes["gen_ai.agent.version"] == "0.0.0"
        assert span.attributes["gen_ai.conversation.id"] == sid
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["server.port"] == port
        assert "error.type" not in span.attributes
        # invoke_agent -> the attempt (task.run) -> the task -> the run
        attempt = by_id[span.parent.span_id]
        task_span = by_id[attempt.parent.span_id]
        assert (attempt.name, task_span.name) == ("task.run", "task")
        assert task_span.parent.span_id == run_span.context.span_id
    # the traceparent each agent received names the span the exporter got
    received = {m["_headers"]["traceparent"] for m in fleet.received}
    assert received == {
        f"00-{s.context.trace_id:032x}-{s.context.span_id:016x}-01" for s in invocations
    }
    # and the built-in trace API shows the same spans, from the same processor chain
    api = client.get(f"/v1/opscore/traces/{detail['traceId']}").json()["spans"]
    assert {s["spanId"] for s in api} >= {f"{s.context.span_id:016x}" for s in invocations}
    assert next(s for s in api if s["name"] == "invoke_agent writer-1")["kind"] == "CLIENT"


def test_a_failed_hand_over_is_an_error_span_with_its_error_type(traced) -> None:
    client, _, exporter = traced
    client.post(
        "/v1/opscore/agents",
        json={
            "agentId": "gone",
            "agentName": "Gone Agent",
            "capabilities": ["work"],
            "contactEndpoint": "http://127.0.0.1:9/run",  # nothing listens on port 9
        },
    ).raise_for_status()
    client.post(
        "/v1/opscore/agent/gone/state",
        json={"agentId": "gone", "timestamp": "2026-01-01T00:00:00Z", "state": "idle"},
    ).raise_for_status()
    create(client, template("once", task("t", retry={"maxAttempts": 1})))
    run(client, "once")
    span = wait_for(
        lambda: next(
            (s for s in exporter.get_finished_spans() if s.name == "invoke_agent Gone Agent"),
            None,
        )
    )
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes["error.type"] == "unreachable"
    assert span.attributes["server.port"] == 9


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP traces endpoint: keeps every ExportTraceServiceRequest it is sent."""

    requests: list[ExportTraceServiceRequest] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        message = ExportTraceServiceRequest()
        message.ParseFromString(body)
        type(self).requests.append(message)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_spans_are_exported_over_otlp_to_a_collector(monkeypatch, fleet_factory) -> None:
    _Receiver.requests = []
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # the batch goes out every 0.1 s
    try:
        server, fleet = fleet_factory(make_settings(otel_export=True))
        fleet.add("w")
        with httpx.Client(base_url=server.url, headers=H, timeout=10) as client:
            create(client, template("exported", task("t")))
            assert settle(client, run(client, "exported"))["status"] == "completed"

        def exported() -> set[str]:
            return {
                span.name
                for request in _Receiver.requests
                for resource in request.resource_spans
                for scope in resource.scope_spans
                for span in scope.spans
            }

        wait_for(lambda: {"invoke_workflow exported", "invoke_agent w"} <= exported())
        resource = _Receiver.requests[0].resource_spans[0].resource
        service = {a.key: a.value.string_value for a in resource.attributes}
        assert service["service.name"] == "opscore"
        server.stop()  # flushes the last batch while the collector still listens
    finally:
        collector.shutdown()


def test_export_asked_for_without_the_extra_stops_start_up_clearly(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    with pytest.raises(ConfigError, match=r"pip install 'opscore\[otel\]'"):
        create_app(make_settings(otel_export=True))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon")
    with pytest.raises(ConfigError, match="not supported"):
        create_app(make_settings(otel_export=True))


def test_without_export_the_service_runs_and_keeps_its_own_traces(server_factory) -> None:
    server: ServerThread = server_factory(make_settings())
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = httpx.get(
        server.url + "/v1/opscore/agents",
        headers={**H, "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 200
    spans = wait_for(
        lambda: httpx.get(server.url + f"/v1/opscore/traces/{trace}", headers=H).json().get("spans")
    )
    assert spans[0]["name"] == "GET /v1/opscore/agents" and spans[0]["kind"] == "SERVER"


def test_token_usage_an_agent_reports_goes_on_the_attempt_span(traced) -> None:
    from fastapi import FastAPI

    client, _, exporter = traced
    answering = FastAPI()

    @answering.post("/run")
    async def handle() -> dict:  # answers with its result and what it cost, at once
        return {
            "status": "completed",
            "result": "summary",
            "usage": {"inputTokens": 1200, "outputTokens": 340, "model": "gpt-5-mini"},
        }

    agent = ServerThread(answering).start()
    try:
        client.post(
            "/v1/opscore/agents",
            json={
                "agentId": "llm",
                "agentName": "llm",
                "capabilities": ["sum"],
                "contactEndpoint": f"{agent.url}/run",
            },
        ).raise_for_status()
        client.post(
            "/v1/opscore/agent/llm/state",
            json={"agentId": "llm", "timestamp": "2026-01-01T00:00:00Z", "state": "idle"},
        ).raise_for_status()
        create(client, template("summarise", task("s", agentCapability="sum")))
        detail = settle(client, run(client, "summarise"))
        assert detail["status"] == "completed"
        attempt = wait_for(
            lambda: next((s for s in exporter.get_finished_spans() if s.name == "task.run"), None)
        )
        assert attempt.attributes["gen_ai.usage.input_tokens"] == 1200
        assert attempt.attributes["gen_ai.usage.output_tokens"] == 340
        assert attempt.attributes["gen_ai.response.model"] == "gpt-5-mini"
    finally:
        agent.stop()


def test_usage_is_read_strictly() -> None:
    from opscore.models.usage import usage_from

    assert usage_from({"inputTokens": 3, "output_tokens": 4}) == {
        "input_tokens": 3,
        "output_tokens": 4,
    }
    assert usage_from({"inputTokens": -1, "outputTokens": True, "model": ""}) is None
    assert usage_from({"inputTokens": 10**13, "model": "m" * 300}) is None
    assert usage_from("lots") is None


def _finished_span(**attributes: object) -> tuple[tuple, list]:
    """One span recorded on a fresh tracer (which reads the OTEL_* variables as it is made):
    what an exporter behind it received, and what the trace API keeps of it."""
    from opscore.observe.tracing import Span, Tracer

    exporter = InMemorySpanExporter()
    tracer = Tracer(processors=[SimpleSpanProcessor(exporter)])
    span = Span(
        name="invoke_agent w",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
        parent_id="a3ce929d0e0e4736",
        start=1_800_000_000.25,
        attributes=dict(attributes),
        kind=SpanKind.CLIENT,
    )
    tracer.record(span, status="error", end=1_800_000_000.75)
    kept = tracer.trace("4bf92f3577b34da6a3ce929d0e0e4736")
    tracer.shutdown()
    return exporter.get_finished_spans(), kept


def test_a_span_built_whole_reaches_the_processors_as_the_sdk_would_make_it() -> None:
    (exported,), kept = _finished_span(taskId="task-1", usage={"tokens": 3}, missing=None)
    assert exported.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert exported.context.span_id == 0x00F067AA0BA902B7
    assert exported.context.trace_flags.sampled
    assert exported.parent.span_id == 0xA3CE929D0E0E4736 and exported.parent.is_remote
    # nanoseconds from float seconds: within a microsecond
    assert abs(exported.start_time - 1_800_000_000_250_000_000) < 1000
    assert abs(exported.end_time - 1_800_000_000_750_000_000) < 1000
    assert exported.kind == SpanKind.CLIENT
    assert exported.status.status_code == StatusCode.ERROR
    assert dict(exported.attributes) == {
        "taskId": "task-1",
        "usage": '{"tokens": 3}',  # what OpenTelemetry cannot hold goes as JSON
        "opscore.status": "error",
    }
    assert exported.instrumentation_scope.name == "opscore"
    assert exported.resource.attributes["service.name"] == "opscore"
    assert [s["spanId"] for s in kept] == ["00f067aa0ba902b7"]


def test_the_sdk_s_sampler_and_switch_hold_for_spans_built_whole(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    assert _finished_span() == ((), [])
    monkeypatch.delenv("OTEL_TRACES_SAMPLER")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert _finished_span() == ((), [])
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    (exported,), _ = _finished_span()
    assert exported.name == "invoke_agent w"


def test_the_sdk_s_span_limits_hold_for_spans_built_whole(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "5")
    (exported,), _ = _finished_span(a="0123456789")
    assert exported.attributes["a"] == "01234"
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "2")
    (exported,), _ = _finished_span(a="x", b="y", c="z")
    assert len(exported.attributes) == 2 and exported.dropped_attributes == 2
