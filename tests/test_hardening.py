"""Hostile and unlucky input: each case reproduces a defect class of issue 13 and checks the
clear answer in the one error shape, with nothing lost and no work out of proportion."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from opscore.config import Settings
from opscore.errors import ConfigError
from opscore.security.keys import KeyStore
from opscore.workflow.substitution import SubstitutionTooLargeError, substitute

from .conftest import KEY, STORES, make_settings, now_iso, store_url
from .fakes import Behaviour
from .test_security import KEYS, write_keys
from .workflow_helpers import create, run, settle, task, template, wait_for

BILLION_LAUGHS = """
id: lol
version: "1"
tasks:
  - taskId: t
    parameters:
      a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
      b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
      c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
      d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
      e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
      f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
      g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
"""


def test_yaml_aliases_are_refused_before_anything_expands(client: httpx.Client) -> None:
    started = time.monotonic()
    response = client.post(
        "/v1/opscore/workflows",
        content=BILLION_LAUGHS,
        headers={"Content-Type": "application/yaml"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "YAML_ALIAS_REFUSED"
    assert "*a" in response.json()["detail"]
    assert time.monotonic() - started < 5  # parsed as events, never built
    assert client.get("/health").status_code == 200


def test_references_that_multiply_a_large_payload_are_refused_at_start(
    server_factory,
) -> None:
    server = server_factory(make_settings(max_task_parameters_bytes=100_000))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        refs = "${input.big}" * 50
        create(c, template("mult", task("t", parameters={"text": refs})))
        response = c.post(
            "/v1/opscore/workflows/mult/runs", json={"initialPayload": {"big": "x" * 10_000}}
        )
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "SUBSTITUTION_TOO_LARGE"
        assert c.get("/v1/opscore/sessions").json()["total"] == 0  # nothing was stored
        small = c.post("/v1/opscore/workflows/mult/runs", json={"initialPayload": {"big": "x"}})
        assert small.status_code == 202


def test_a_run_whose_parameters_together_are_too_large_is_refused(server_factory) -> None:
    server = server_factory(make_settings(max_run_parameters_bytes=50_000))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        steps = [task(f"s{i}", parameters={"copy": "${input.big}"}) for i in range(10)]
        create(c, template("wide", *steps))
        response = c.post(
            "/v1/opscore/workflows/wide/runs", json={"initialPayload": {"big": "y" * 10_000}}
        )
        assert response.status_code == 422
        assert "OPSCORE_MAX_RUN_PARAMETERS_BYTES" in response.json()["detail"]


def test_a_result_that_would_blow_up_a_later_step_fails_that_step_not_the_service(
    fleet_factory,
) -> None:
    server, fleet = fleet_factory(make_settings(max_task_parameters_bytes=20_000))
    fleet.add("w")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        # the fake agent's result echoes its parameters: 'a' returns the 5 KB input, 'b'
        # references that result ten times inside one string
        create(
            c,
            template(
                "chain",
                task("a", parameters={"text": "${input.text}"}, nextTaskId="b"),
                task("b", parameters={"x": "${tasks.a.result}" * 10}),
            ),
        )
        detail = settle(c, run(c, "chain", {"text": "z" * 5_000}))
        assert detail["status"] == "failed"
        b = next(t for t in detail["tasks"] if t["stepId"] == "b")
        assert b["status"] == "failed" and "after substitution" in b["error"]
        assert c.get("/v1/opscore/dead-letters").json()["total"] == 1


@settings(max_examples=60, deadline=None)
@given(
    payload=st.text(max_size=300),
    copies=st.integers(min_value=0, max_value=40),
    limit=st.integers(min_value=10, max_value=5_000),
)
def test_substitution_never_builds_more_than_its_limit(
    payload: str, copies: int, limit: int
) -> None:
    params = {"whole": "${input.p}", "text": "${input.p}-" * copies}
    try:
        out = substitute(params, {"input": {"p": payload}}, limit=limit)
    except SubstitutionTooLargeError:
        return
    assert len(out["text"]) + len(out["whole"] or "") <= limit


def test_a_report_from_the_far_future_is_refused_and_later_reports_still_count(
    client: httpx.Client,
) -> None:
    client.post("/v1/opscore/agents", json={"agentId": "clocky", "agentName": "c"})
    far = client.post(
        "/v1/opscore/agent/clocky/state",
        json={"agentId": "clocky", "timestamp": "9999-12-31T23:59:59Z", "state": "idle"},
    )
    assert far.status_code == 422 and far.json()["error"]["code"] == "TIMESTAMP_IN_FUTURE"
    fine = client.post(
        "/v1/opscore/agent/clocky/state",
        json={"agentId": "clocky", "timestamp": now_iso(), "state": "idle"},
    )
    assert fine.status_code == 202


@pytest.mark.parametrize("value", ["²".encode(), b"12a", b"-1", b"9" * 40, b"1.5"])
def test_a_malformed_last_event_id_is_a_422_not_a_500(client: httpx.Client, value: bytes) -> None:
    response = client.get("/v1/opscore/logs/stream", headers={"Last-Event-ID": value})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "VALIDATION_ERROR"


def test_an_idempotency_key_reused_for_a_different_request_is_refused(
    client: httpx.Client,
) -> None:
    create(client, template("idem", task("t")))
    headers = {"Idempotency-Key": "order-7"}
    first = client.post(
        "/v1/opscore/workflows/idem/runs", json={"initialPayload": {"n": 1}}, headers=headers
    )
    again = client.post(
        "/v1/opscore/workflows/idem/runs", json={"initialPayload": {"n": 1}}, headers=headers
    )
    assert first.status_code == again.status_code == 202
    assert again.json()["sessionId"] == first.json()["sessionId"] and again.json()["duplicate"]
    other = client.post(
        "/v1/opscore/workflows/idem/runs", json={"initialPayload": {"n": 2}}, headers=headers
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    bad = client.post(
        "/v1/opscore/workflows/idem/runs", json={}, headers={"Idempotency-Key": "a b"}
    )
    assert bad.status_code == 422


def _keys_settings(path: Path) -> Settings:
    return make_settings(api_key=None, keys_file=path)


def test_a_malformed_key_digest_stops_start_up_with_one_line_naming_the_entry(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys.yaml"
    path.write_text("keys:\n  - name: broken\n    role: admin\n    key_sha256: not-hex-zz\n")
    with pytest.raises(ConfigError) as refused:
        KeyStore(_keys_settings(path))
    message = refused.value.message
    assert "entry 0 ('broken')" in message and "64 hex digits" in message
    assert "not-hex-zz" not in message and "\n" not in message


def test_a_yaml_error_in_the_keys_file_does_not_quote_the_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    secret = "super-secret-key-material-123"
    path.write_text(f"keys:\n  - name: x\n    role: admin\n    key: {secret}\n  - [unclosed\n")
    with pytest.raises(ConfigError) as refused:
        KeyStore(_keys_settings(path))
    assert secret not in refused.value.message and "line" in refused.value.message


def test_a_broken_keys_file_keeps_the_keys_logs_once_and_is_not_reread(
    secured_server, caplog
) -> None:
    server, keys_file = secured_server
    viewer = httpx.Client(base_url=server.url, headers={"X-API-Key": KEYS["viewer"]}, timeout=10)
    bad_digest = "keys:\n  - name: oops\n    role: admin\n    key_sha256: 12345\n"
    keys_file.write_text(bad_digest)
    os.utime(keys_file, (time.time() + 5, time.time() + 5))
    with caplog.at_level("ERROR", logger="opscore.auth"):
        for _ in range(5):
            assert viewer.get("/v1/opscore/agents").status_code == 200  # previous keys in force
    failures = [r for r in caplog.records if "keys file reload failed" in r.getMessage()]
    assert len(failures) == 1 and not failures[0].exc_info
    assert "12345" not in str(failures[0].__dict__.get("problem"))
    write_keys(keys_file)  # fixed: read again on its next change
    os.utime(keys_file, (time.time() + 10, time.time() + 10))
    assert viewer.get("/v1/opscore/agents").status_code == 200
    viewer.close()


@pytest.fixture
def secured_server(server_factory, tmp_path):
    keys_file = tmp_path / "keys.yaml"
    write_keys(keys_file)
    return server_factory(make_settings(keys_file=keys_file)), keys_file


def test_the_dispatcher_says_what_is_wrong_and_keeps_going_after_any_failure(
    fleet_factory,
) -> None:
    """Not only the store: a pass that raises anything is retried with backoff."""
    server, fleet = fleet_factory(make_settings())
    fleet.add("w", Behaviour())
    services = server.app.state.services  # type: ignore[attr-defined]
    real = services.storage.dequeue_ready
    calls = {"n": 0}

    async def flaky(now, limit, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] <= 3:
            raise RuntimeError("injected")
        return await real(now, limit, **kwargs)

    services.storage.dequeue_ready = flaky
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        create(c, template("f", task("t")))
        sid = run(c, "f")
        assert settle(c, sid)["status"] == "completed"
        wait_for(lambda: c.get("/ready").json()["checks"]["dispatcher"] == "ok")
    assert calls["n"] > 3


def test_one_trace_keeps_a_bounded_number_of_spans() -> None:
    from opscore.observe.tracing import Span, Tracer

    tracer = Tracer(max_spans_per_trace=5)
    for i in range(50):
        tracer.record(Span(name=f"s{i}", trace_id="a" * 32, parent_id=None, start=0.0))
    assert len(tracer.trace("a" * 32)) == 5 and tracer.dropped_spans == 45


def test_refused_requests_leave_no_spans_whatever_traceparent_they_carry(
    client: httpx.Client, anon: httpx.Client
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    header = {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
    for _ in range(20):
        assert anon.get("/v1/opscore/agents", headers=header).status_code == 401
    response = client.get(f"/v1/opscore/traces/{trace_id}")
    assert response.status_code == 404 or response.json().get("spans") == []
    assert client.get("/v1/opscore/agents", headers=header).status_code == 200
    spans = client.get(f"/v1/opscore/traces/{trace_id}").json()["spans"]
    assert len(spans) == 1


def test_no_secret_reaches_a_log_record_an_error_body_a_span_or_the_metrics(
    server_factory, tmp_path, caplog
) -> None:
    """Known secrets go through the paths that handle them; everything emitted is searched."""
    import hashlib
    import hmac as hmac_lib
    import json as json_lib
    import logging

    file_key = "file-key-material-0987654321"
    wrong_key = "a-wrong-key-typed-by-someone-1234"
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(f"keys:\n  - name: op\n    role: operator\n    key: {file_key}\n")
    secret = "webhook-secret-under-test-5555"
    server = server_factory(make_settings(keys_file=keys_file, webhook_secret=secret))
    emitted: list[str] = []
    with caplog.at_level(logging.DEBUG):
        with httpx.Client(base_url=server.url, timeout=10) as c:
            calls = [
                c.get("/v1/opscore/agents", headers={"Authorization": f"Bearer {KEY}"}),
                c.get("/v1/opscore/agents", headers={"X-API-Key": file_key}),
                c.get("/v1/opscore/agents", headers={"Authorization": f"Bearer {wrong_key}"}),
                c.get("/v1/opscore/agents", headers={"X-API-Key": wrong_key}),
            ]
            body = json_lib.dumps(
                {"event_type": "REGISTER", "agent_details": {"agentId": "hooked"}},
                separators=(",", ":"),
            ).encode()
            stamp = str(int(time.time()))
            signature = hmac_lib.new(
                secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
            ).hexdigest()
            hook = {"X-AgentKit-Timestamp": stamp, "X-AgentKit-Signature": signature}
            calls.append(c.post("/v1/opscore/internal/agent/notify", content=body, headers=hook))
            calls.append(c.post("/v1/opscore/internal/agent/notify", content=body, headers=hook))
            bad = {**hook, "X-AgentKit-Signature": "f" * 64}
            calls.append(c.post("/v1/opscore/internal/agent/notify", content=body, headers=bad))
            keys_file.write_text("keys: [ {name: broken, key: " + file_key)  # broken on purpose
            os.utime(keys_file, (time.time() + 5, time.time() + 5))
            calls.append(c.get("/v1/opscore/agents", headers={"X-API-Key": file_key}))
            admin = {"Authorization": f"Bearer {KEY}"}
            calls.append(c.get("/v1/opscore/logs", params={"limit": 500}, headers=admin))
            calls.append(c.get("/metrics", headers=admin))
            calls.append(c.get("/v1/opscore/sessions", headers=admin))
        for response in calls:
            emitted.append(response.text)
            emitted.append(json_lib.dumps(dict(response.headers)))
    emitted += [r.getMessage() + json_lib.dumps(r.__dict__, default=str) for r in caplog.records]
    haystack = "\n".join(emitted)
    for needle in (KEY, file_key, wrong_key, secret, signature):
        assert needle not in haystack, f"a secret leaked: {needle[:6]}..."
    assert calls[1].status_code == 200 and calls[2].status_code == 401


def test_a_body_over_the_limit_gets_its_413_not_a_reset_connection(client: httpx.Client) -> None:
    response = client.post(
        "/v1/opscore/workflows",
        content=b"x" * (8 * 1024 * 1024),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"


def test_a_trickled_body_is_cut_off_with_408(server_factory) -> None:
    import socket

    server = server_factory(make_settings(body_timeout_seconds=0.5))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/opscore/workflows HTTP/1.1\r\nHost: t\r\n"
            + f"Authorization: Bearer {KEY}\r\n".encode()
            + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        started = time.monotonic()
        answer = _read_answer(s)
    assert answer.startswith(b"HTTP/1.1 408") and b"REQUEST_TIMEOUT" in answer
    assert time.monotonic() - started < 5


def test_a_locked_sqlite_file_stalls_the_write_not_the_service(server_factory, tmp_path) -> None:
    """SQLite calls run on the store's own thread: while another process holds the file's
    lock, a write waits, and /health still answers at once."""
    import sqlite3
    import threading

    path = tmp_path / "locked.db"
    server = server_factory(make_settings(storage_url=f"sqlite:///{path}"))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        assert c.post("/v1/opscore/agents", json={"agentId": "a", "agentName": "a"}).is_success
        holder = sqlite3.connect(path, isolation_level=None, timeout=1)
        holder.execute("BEGIN EXCLUSIVE")
        result: dict[str, int] = {}

        def write() -> None:
            body = {"agentId": "a", "timestamp": now_iso(), "state": "idle"}
            result["status"] = c.post("/v1/opscore/agent/a/state", json=body).status_code

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(0.3)  # the write is now waiting for the lock
        started = time.monotonic()
        assert c.get("/health").status_code == 200
        assert time.monotonic() - started < 0.5
        assert writer.is_alive()
        holder.execute("COMMIT")
        holder.close()
        writer.join(timeout=15)
        assert result["status"] == 202  # the write went through once the lock was released


def test_on_memory_dead_letters_leave_with_the_runs_that_retention_removes(
    fleet_factory,
) -> None:
    server, fleet = fleet_factory(make_settings(session_retention=10))
    fleet.add("broken", Behaviour(kind="fail", failures=1000))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        create(c, template("doomed", task("t", retry={"maxAttempts": 1})))
        sids = []
        for _ in range(13):  # one at a time: this fake's trailing 'idle' names no task
            sids.append(run(c, "doomed"))
            assert settle(c, sids[-1])["status"] == "failed"
        letters = c.get("/v1/opscore/dead-letters").json()
        sessions = c.get("/v1/opscore/sessions").json()["total"]
        assert sessions == 10 and letters["total"] == 10  # none outlives its run
        kept = {item["sessionId"] for item in letters["items"]}
        assert kept == set(sids[-10:])
        newest = letters["items"][0]["taskId"]  # and what is listed can be re-driven
        assert c.post(f"/v1/opscore/dead-letters/{newest}/redrive").status_code == 200


@pytest.mark.parametrize("backend", STORES)
def test_retention_sweeps_old_runs(backend: str, fleet_factory, tmp_path, request) -> None:
    url = store_url(request, backend, tmp_path)
    server, fleet = fleet_factory(
        make_settings(storage_url=url, retention_seconds=1, retention_interval=0.1)
    )
    fleet.add("w")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        create(c, template("r", task("t")))
        old = settle(c, run(c, "r"))
        assert old["status"] == "completed"
        # the sweep removes the run about a second after it finished, with its task
        wait_for(lambda: c.get(f"/v1/opscore/sessions/{old['sessionId']}").status_code == 404)
        assert c.get(f"/v1/opscore/tasks/{old['tasks'][0]['taskId']}").status_code == 404


@pytest.mark.parametrize("backend", STORES)
def test_operators_can_purge_runs_by_count(backend: str, fleet_factory, tmp_path, request) -> None:
    """With the default retention, which sweeps nothing meanwhile. Beside a retention of one
    second (the test above, where this one was), three runs in a row outlived it on a slow
    CI machine, and the sweep took them before the purge could (it removed 0)."""
    url = store_url(request, backend, tmp_path)
    server, fleet = fleet_factory(make_settings(storage_url=url))
    fleet.add("w")
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        create(c, template("r", task("t")))
        # an operator purge by count; a viewer-free check: the route needs the admin scope
        for _ in range(3):
            settle(c, run(c, "r"))
        purged = c.post("/v1/opscore/admin/purge", json={"keep": 1})
        assert purged.status_code == 200 and purged.json()["removed"] >= 2
        assert c.get("/v1/opscore/sessions").json()["total"] <= 1


@pytest.fixture
def headers_within_half_a_second():
    """A server whose protocol allows a request's headers 0.5 s."""
    from opscore.api import create_app
    from opscore.http.protocol import bounded_headers_protocol

    from .servers import ServerThread

    server = ServerThread(create_app(make_settings()), http=bounded_headers_protocol(0.5)).start()
    yield server
    server.stop()


def test_headers_trickled_a_byte_at_a_time_are_cut_off_with_408(
    headers_within_half_a_second,
) -> None:
    import socket

    server = headers_within_half_a_second
    with httpx.Client(base_url=server.url) as c:  # an ordinary request is not affected
        assert c.get("/health").status_code == 200
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        _trickle_headers_until_cut_off(s)


def test_a_second_request_trickled_on_a_kept_alive_connection_is_cut_off_too(
    headers_within_half_a_second,
) -> None:
    """The first request arrives whole (no deadline needed); the next one on the same
    connection begins in one read and trickles the rest: its deadline starts there."""
    import socket

    server = headers_within_half_a_second
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _read_answer(s).startswith(b"HTTP/1.1 200")  # read whole; the connection stays
        time.sleep(0.7)  # longer than the deadline: an idle kept-alive connection is fine
        _trickle_headers_until_cut_off(s)


def _trickle_headers_until_cut_off(sock) -> None:  # type: ignore[no-untyped-def]
    """Begin a request, then send a header line every 0.1 s (for up to 3 s): the server
    must answer 408 and close well within that."""
    import select

    sock.sendall(b"GET /health HTTP/1.1\r\n")
    started = time.monotonic()
    for _ in range(30):
        readable, _, _ = select.select([sock], [], [], 0.1)
        if readable:
            break  # the server answered: stop writing, or its close resets the socket
        sock.sendall(b"X-Slow: y\r\n")
    answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408") and b"REQUEST_TIMEOUT" in answer
    assert time.monotonic() - started < 2.5


def _read_answer(sock) -> bytes:  # type: ignore[no-untyped-def]
    """What the server sends until its JSON answer is whole or it closes the connection
    (at most 10 s)."""
    sock.settimeout(10)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
            if b"\r\n\r\n" in data and data.rstrip().endswith(b"}"):
                break
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def test_a_body_sent_after_its_headers_is_waited_for(server_factory) -> None:
    """Headers in one write, the body in another a moment later: the gateway waits for it
    (under the deadline) rather than taking only what came with the headers."""
    import socket

    server = server_factory(make_settings(body_timeout_seconds=10))
    body = b'{"agentId": "late-body", "agentName": "late body"}'
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/opscore/agents HTTP/1.1\r\nHost: t\r\n"
            + f"Authorization: Bearer {KEY}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        time.sleep(0.2)  # the request is now waiting for its body
        s.sendall(body)
        answer = _read_answer(s)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    assert b'"agentId":"late-body"' in answer.replace(b" ", b"")


async def test_sqlite_keeps_a_cache_the_tasks_pages_fit_in(tmp_path) -> None:
    """SQLite's default page cache is 2 MiB: past a few thousand runs writes read their
    pages back from the file. Both of the store's connections keep CACHE_KIB."""
    from opscore.storage.sqlite import SQLiteStorage
    from opscore.storage.sqlite.base import CACHE_KIB

    store = SQLiteStorage(tmp_path / "opscore.db")
    await store.open()
    try:
        for conn in (store._conn, store._loop_conn):
            assert conn is not None
            assert conn.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    finally:
        await store.close()
