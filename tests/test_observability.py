"""Log inspection (query and SSE), tracing and metrics over real HTTP."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from .conftest import KEY, make_settings, now_iso
from .fakes import Behaviour
from .servers import wait_for
from .workflow_helpers import by_step, create, run, settle, task, template

H = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def ops(fleet_factory):
    server, fleet = fleet_factory(make_settings(sse_keepalive_seconds=0.2))
    with httpx.Client(base_url=server.url, headers=H, timeout=10) as c:
        yield c, fleet, server


def test_logs_filter_by_level_agent_session_text_and_time(ops) -> None:
    client, fleet, _ = ops
    fleet.add("logger-agent", Behaviour(kind="fail", failures=1))
    create(client, template("lg", task("t", retry={"maxAttempts": 2, "backoffSeconds": 0.01})))
    sid = run(client, "lg")
    settle(client, sid)

    warnings = client.get("/v1/opscore/logs", params={"level": "WARNING"}).json()["items"]
    assert warnings and all(r["level"] in ("WARNING", "ERROR", "CRITICAL") for r in warnings)
    assert any(r["message"] == "task.retry" for r in warnings)
    by_session = client.get("/v1/opscore/logs", params={"sessionId": sid, "order": "asc"}).json()[
        "items"
    ]
    operations = [r["message"] for r in by_session if r["logger"] != "opscore.access"]
    assert operations[0] == "workflow.started" and operations[-1] == "workflow.completed"
    assert any(r["logger"] == "opscore.access" for r in by_session)  # access lines carry sessionId
    assert all(r["sessionId"] == sid for r in by_session)
    by_agent = client.get("/v1/opscore/logs", params={"agentId": "logger-agent"}).json()["items"]
    assert by_agent and all(r["agentId"] == "logger-agent" for r in by_agent)
    text = client.get("/v1/opscore/logs", params={"q": "RETRY"}).json()["items"]
    assert text and all("retry" in r["message"] for r in text)
    by_logger = client.get("/v1/opscore/logs", params={"logger": "opscore.task"}).json()["items"]
    assert by_logger and all(r["logger"] == "opscore.task" for r in by_logger)
    future = client.get("/v1/opscore/logs", params={"since": "2100-01-01T00:00:00Z"}).json()
    assert future["total"] == 0
    page = client.get("/v1/opscore/logs", params={"limit": 2}).json()
    assert len(page["items"]) == 2 and page["total"] > 2
    assert page["items"][0]["id"] > page["items"][1]["id"]  # newest first by default


def test_log_buffer_is_bounded(server_factory) -> None:
    server = server_factory(make_settings(log_buffer_size=100))
    with httpx.Client(base_url=server.url, headers=H) as c:
        for _ in range(150):
            c.get("/v1/opscore/agents")
        total = c.get("/v1/opscore/logs", params={"limit": 500}).json()["total"]
    assert total <= 100


class SSEReader(threading.Thread):
    """A real SSE client on its own thread: collects events and comments."""

    def __init__(self, url: str, params: dict | None = None, headers: dict | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.params, self.headers = url, params or {}, {**H, **(headers or {})}
        self.events: list[dict] = []
        self.comments: list[str] = []
        self.connected = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10, read=5)) as c,
            c.stream(
                "GET",
                self.url + "/v1/opscore/logs/stream",
                params=self.params,
                headers=self.headers,
            ) as response,
        ):
            assert response.headers["content-type"].startswith("text/event-stream")
            block: list[str] = []
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith(":"):
                    self.comments.append(line)
                    self.connected.set()
                elif line:
                    block.append(line)
                else:
                    if block:
                        fields = dict(item.split(": ", 1) for item in block)
                        self.events.append({"id": int(fields["id"]), **json.loads(fields["data"])})
                    block = []


def test_sse_streams_matching_records_live_with_keepalives(ops) -> None:
    client, fleet, server = ops
    fleet.add("streamer")
    reader = SSEReader(server.url, {"agentId": "streamer"})
    reader.start()
    assert reader.connected.wait(5)
    client.post(
        "/v1/opscore/agent/streamer/state",
        json={"agentId": "streamer", "timestamp": now_iso(), "state": "active"},
    )
    wait_for(
        lambda: any(
            e["message"] == "POST /v1/opscore/agent/streamer/state 202" for e in reader.events
        ),
        timeout=5,
    )
    assert all(e.get("agentId") == "streamer" for e in reader.events)
    wait_for(lambda: any("keepalive" in c for c in reader.comments), timeout=5)
    reader.stop.set()


def test_sse_resumes_after_last_event_id(ops) -> None:
    client, _, server = ops
    client.get("/v1/opscore/agents", headers={"X-Request-ID": "before-1"})
    wait_for(
        lambda: client.get("/v1/opscore/logs", params={"requestId": "before-1"}).json()["total"]
    )
    first = client.get("/v1/opscore/logs", params={"requestId": "before-1"}).json()["items"][0][
        "id"
    ]
    client.get("/v1/opscore/agents", headers={"X-Request-ID": "after-1"})
    time.sleep(0.2)
    reader = SSEReader(
        server.url, {"logger": "opscore.access"}, headers={"Last-Event-ID": str(first)}
    )
    reader.start()
    wait_for(lambda: any(e.get("requestId") == "after-1" for e in reader.events), timeout=5)
    assert all(e["id"] > first for e in reader.events)
    reader.stop.set()


def test_workflow_run_is_one_trace_with_linked_spans_and_traceparent_reaches_the_agent(ops) -> None:
    client, fleet, _ = ops
    fleet.add("traced")
    create(client, template("tr", task("a", nextTaskId="b"), task("b")))
    incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = client.post(
        "/v1/opscore/workflows/tr/runs",
        json={},
        headers={"traceparent": f"00-{incoming_trace}-00f067aa0ba902b7-01"},
    )
    sid = response.json()["sessionId"]
    settle(client, sid)

    def spans_complete():
        spans = client.get(f"/v1/opscore/sessions/{sid}/spans").json()
        names = [s["name"] for s in spans["spans"]]
        return (
            spans
            if names.count("task.run") == 2
            and "invoke_workflow tr" in names
            and all(s["end"] for s in spans["spans"])
            else None
        )

    spans = wait_for(spans_complete, timeout=5)
    assert spans["traceId"] == incoming_trace
    by_id = {s["spanId"]: s for s in spans["spans"]}
    request = next(s for s in spans["spans"] if s["name"].startswith("POST "))
    assert request["parentId"] == "00f067aa0ba902b7"
    run_span = next(s for s in spans["spans"] if s["name"] == "invoke_workflow tr")
    assert run_span["parentId"] == request["spanId"]
    task_spans = [s for s in spans["spans"] if s["name"] == "task"]
    assert len(task_spans) == 2 and all(s["parentId"] == run_span["spanId"] for s in task_spans)
    for name in ("task.queued", "invoke_agent traced", "task.run"):
        children = [s for s in spans["spans"] if s["name"] == name]
        assert len(children) == 2 and all(
            by_id[c["parentId"]]["name"] in ("task", "task.run") for c in children
        )
        assert all(c["durationMs"] is not None and c["durationMs"] >= 0 for c in children)
    dispatch_ids = {s["spanId"] for s in spans["spans"] if s["name"] == "invoke_agent traced"}
    sent = [m["_headers"]["traceparent"] for m in fleet.received]
    assert {tp.split("-")[1] for tp in sent} == {incoming_trace}
    assert {tp.split("-")[2] for tp in sent} == dispatch_ids
    assert client.get(f"/v1/opscore/traces/{incoming_trace}").json()["spans"]
    assert client.get("/v1/opscore/traces/" + "f" * 32).status_code == 404
    assert client.get("/v1/opscore/traces/not-hex").status_code == 422


def test_malformed_traceparent_is_ignored(client) -> None:
    response = client.get("/v1/opscore/agents", headers={"traceparent": "garbage"})
    assert response.status_code == 200


def test_metrics_expose_requests_states_tasks_queue_and_agents(ops) -> None:
    client, fleet, _ = ops
    fleet.add("m1")
    fleet.add("m2", Behaviour(kind="fail", failures=1))
    create(client, template("mt", task("a", retry={"maxAttempts": 2, "backoffSeconds": 0.01})))
    for _ in range(3):
        settle(client, run(client, "mt"))
    text = client.get("/metrics").text
    assert (
        'opscore_http_requests_total{method="POST",route="/v1/opscore/workflows/{workflowId}/runs",status="202"} 3.0'
        in text
    )
    assert 'opscore_state_reports_total{state="idle"}' in text
    assert 'opscore_task_outcomes_total{outcome="completed"} 3.0' in text
    assert 'opscore_task_outcomes_total{outcome="agent_error"} 1.0' in text
    assert "opscore_queue_depth 0.0" in text
    assert 'opscore_agents{state="idle"} 2.0' in text
    assert (
        "opscore_dispatch_latency_seconds_count" in text
        and "opscore_task_duration_seconds_bucket" in text
    )
    anon = httpx.get(str(client.base_url) + "/metrics")
    assert anon.status_code == 401


def test_metrics_count_runs_hand_overs_dead_letters_and_the_wait_for_an_agent(ops) -> None:
    client, fleet, _ = ops
    fleet.add("ok")
    fleet.add("bad", Behaviour(kind="fail", failures=99, capabilities=["fragile"]))
    create(client, template("good", task("a")))
    create(
        client, template("doomed", task("a", agentCapability="fragile", retry={"maxAttempts": 1}))
    )
    create(client, template("stuck", task("a", agentCapability="nobody-has-this")))
    for _ in range(2):
        assert settle(client, run(client, "good"))["status"] == "completed"
    assert settle(client, run(client, "doomed"))["status"] == "failed"
    stuck = run(client, "stuck")

    def waited() -> float:
        """The oldest ready entry's wait (an entry a dispatch pass holds still counts)."""
        text = client.get("/metrics").text
        age = re.search(r"^opscore_queue_oldest_ready_seconds (\S+)$", text, re.M)
        assert age is not None
        return float(age.group(1))

    # while the stuck run waits for an agent, its task's wait shows; once cancelled, none
    wait_for(lambda: waited() > 0)
    assert client.post(f"/v1/opscore/sessions/{stuck}/cancel").status_code == 200
    text = client.get("/metrics").text
    for line in (
        'opscore_runs_total{status="started",workflow="good"} 2.0',
        'opscore_runs_total{status="completed",workflow="good"} 2.0',
        'opscore_runs_total{status="failed",workflow="doomed"} 1.0',
        'opscore_runs_total{status="started",workflow="stuck"} 1.0',
        'opscore_runs_total{status="cancelled",workflow="stuck"} 1.0',
        "opscore_dead_letters 1.0",
    ):
        assert line in text, line
    # the fake agents answer a hand-over with 202, then report: "accepted" by transport
    accepted = re.search(
        r'opscore_dispatches_total\{outcome="accepted",transport="agent"\} (\S+)', text
    )
    assert accepted is not None and float(accepted.group(1)) == 3.0
    wait_for(lambda: "opscore_queue_oldest_ready_seconds 0.0" in client.get("/metrics").text)


def test_the_grafana_dashboard_queries_only_metrics_that_exist(ops) -> None:
    client, _, _ = ops
    exposed = client.get("/metrics").text
    dashboard = json.loads(
        (Path(__file__).resolve().parents[1] / "deploy" / "grafana-dashboard.json").read_text()
    )
    names = set()
    for panel in dashboard["panels"]:
        assert panel["title"] and panel["description"] and panel["targets"]
        for target in panel["targets"]:
            names |= set(re.findall(r"opscore_[a-z_]+", target["expr"]))
    assert len(names) >= 12
    for name in names:
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        assert f"# HELP {base} " in exposed, f"the dashboard queries {name}, which is not exposed"


def test_a_run_with_a_retry_has_one_complete_ordered_timeline(ops) -> None:
    client, fleet, _ = ops
    fleet.add("flaky", Behaviour(kind="fail", failures=1, work_seconds=0.02))
    create(
        client,
        template(
            "tl2",
            task("a", nextTaskId="b", retry={"maxAttempts": 3, "backoffSeconds": 0.01}),
            task("b"),
        ),
    )
    sid = run(client, "tl2")
    assert settle(client, sid)["status"] == "completed"
    body = client.get(f"/v1/opscore/sessions/{sid}/timeline").json()
    events = body["events"]
    assert body["sessionId"] == sid and body["status"] == "completed" and body["traceId"]
    assert [e["at"] for e in events] == sorted(e["at"] for e in events)
    assert body["partial"] == []

    def of(source: str, event: str | None = None, **where) -> list[dict]:
        return [
            e
            for e in events
            if e["source"] == source
            and (event is None or e["event"] == event)
            and all(e.get(k) == v for k, v in where.items())
        ]

    # the run, its steps and every attempt, in the order they happened (the request that
    # started the run is the trace's first span, so it comes before the run itself)
    assert events[0]["source"] == "span" and events[0]["event"].startswith("POST ")
    started = of("run", "run.started")[0]
    assert all(started["at"] <= e["at"] for e in events if e["source"] in ("task", "attempt"))
    ended = of("run", "run.completed")[0]
    a_attempts = of("attempt", "attempt.ended", stepId="a")
    assert [e["details"]["outcome"] for e in a_attempts] == ["agent_error", "completed"]
    assert [e["attempt"] for e in of("attempt", "attempt.dispatched", stepId="a")] == [1, 2]
    b_done = of("task", "task.completed", stepId="b")[0]
    assert a_attempts[-1]["at"] <= of("attempt", "attempt.dispatched", stepId="b")[0]["at"]
    assert b_done["at"] <= ended["at"]
    # what the agent reported while it worked on the run, the run's logs and its spans
    states = [e["details"]["state"] for e in of("agent", agentId="flaky")]
    assert "error" in states and "active" in states and "idle" in states
    messages = {e["event"] for e in of("log")}
    assert {"workflow.started", "task.dispatched", "workflow.completed"} <= messages
    assert of("span", "invoke_workflow tl2")
    missing = client.get("/v1/opscore/sessions/nope/timeline")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "SESSION_NOT_FOUND"


def test_session_detail_is_a_timeline(ops) -> None:
    client, fleet, _ = ops
    fleet.add("t1", Behaviour(work_seconds=0.05))
    create(client, template("tl", task("a", nextTaskId="b"), task("b")))
    detail = settle(client, run(client, "tl"))
    steps = by_step(detail)
    assert detail["durationSeconds"] > 0
    assert steps["a"]["finishedAt"] <= steps["b"]["dispatchedAt"]
    assert steps["a"]["history"][0]["agentId"] == "t1"
