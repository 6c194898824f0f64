"""Roles and scoped keys, key rotation, rate limits, CORS, and hostile input, as an attacker
would try them."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import httpx
import pytest

from .conftest import KEY, make_settings
from .fakes import Behaviour
from .servers import wait_for
from .workflow_helpers import create, task, template

KEYS = {
    "ops": "operator-key-1111111111",
    "viewer": "viewer-key-2222222222",
    "agent": "agent-key-3333333333",
    "admin2": "second-admin-key-44444",
}


def write_keys(path: Path, *, extra: str = "") -> None:
    digest = hashlib.sha256(KEYS["ops"].encode()).hexdigest()
    path.write_text(f"""
keys:
  - name: ci-operator
    role: operator
    key_sha256: {digest}
  - name: dashboard-viewer
    role: viewer
    key: {KEYS["viewer"]}
  - name: summarizer-agent
    role: agent
    key: {KEYS["agent"]}
    agents: [summarizer-1]
{extra}
""")


@pytest.fixture
def secured(server_factory, tmp_path):
    keys_file = tmp_path / "keys.yaml"
    write_keys(keys_file)
    server = server_factory(make_settings(keys_file=keys_file))
    clients = {
        name: httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=10)
        for name, key in {**KEYS, "admin": KEY}.items()
    }
    admin = clients["admin"]
    for agent_id in ("summarizer-1", "other-agent"):
        admin.post("/v1/opscore/agents", json={"agentId": agent_id, "agentName": agent_id})
    create(admin, template("wf", task("a")))
    yield server, clients, keys_file
    for c in clients.values():
        c.close()


def state(agent_id: str, ts: str = "2026-11-24T10:00:00Z") -> dict:
    return {"agentId": agent_id, "timestamp": ts, "state": "idle"}


def test_agent_key_reports_only_for_its_own_agents(secured) -> None:
    _, c, _ = secured
    assert (
        c["agent"]
        .post("/v1/opscore/agent/summarizer-1/state", json=state("summarizer-1"))
        .status_code
        == 202
    )
    denied = c["agent"].post("/v1/opscore/agent/other-agent/state", json=state("other-agent"))
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "AGENT_NOT_ALLOWED"
    assert c["admin"].get("/v1/opscore/agents/other-agent").json()["state"] is None
    assert c["agent"].get("/v1/opscore/agents").status_code == 403
    assert c["agent"].post("/v1/opscore/workflows/wf/runs", json={}).status_code == 403


def test_viewer_reads_but_cannot_change_anything(secured) -> None:
    _, c, _ = secured
    assert c["viewer"].get("/v1/opscore/agents").status_code == 200
    assert c["viewer"].get("/metrics").status_code == 200
    for method, path, body in [
        ("POST", "/v1/opscore/workflows/wf/runs", {}),
        ("POST", "/v1/opscore/agents", {"agentName": "x"}),
        ("DELETE", "/v1/opscore/agents/summarizer-1", None),
        ("POST", "/v1/opscore/agent/summarizer-1/state", state("summarizer-1")),
        ("DELETE", "/v1/opscore/workflows/wf", None),
    ]:
        response = c["viewer"].request(method, path, json=body)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "FORBIDDEN"
    assert c["admin"].get("/v1/opscore/sessions").json()["total"] == 0


def test_operator_runs_workflows_and_manages_templates(secured) -> None:
    _, c, _ = secured
    assert c["ops"].post("/v1/opscore/workflows/wf/runs", json={}).status_code == 202
    assert (
        c["ops"].post("/v1/opscore/workflows", json=template("wf2", task("a"))).status_code == 201
    )
    assert c["ops"].get("/v1/opscore/dead-letters").status_code == 200


def test_operators_decide_approvals_agents_may_only_signal_viewers_neither(secured) -> None:
    _, c, _ = secured
    admin = c["admin"]
    create(
        admin,
        template(
            "gated",
            {"taskId": "review", "kind": "approval"},
            {"taskId": "paid", "kind": "signal", "wait": {"signal": "paid"}},
        ),
    )
    sid = admin.post("/v1/opscore/workflows/gated/runs", json={}).json()["sessionId"]
    items = wait_for(lambda: len(c["viewer"].get("/v1/opscore/waiting").json()["items"]) == 2)
    assert items
    review = admin.get(f"/v1/opscore/sessions/{sid}").json()["taskIds"]["review"]

    for name in ("viewer", "agent"):
        denied = c[name].post(f"/v1/opscore/tasks/{review}/approve", json={})
        assert denied.status_code == 403, name
    assert c["viewer"].post(f"/v1/opscore/sessions/{sid}/signals/paid", json={}).status_code == 403
    signalled = c["agent"].post(f"/v1/opscore/sessions/{sid}/signals/paid", json={})
    assert signalled.status_code == 200
    assert signalled.json()[0]["decision"]["decidedBy"] == "summarizer-agent"
    approved = c["ops"].post(f"/v1/opscore/tasks/{review}/approve", json={"comment": "ok"})
    assert approved.status_code == 200
    assert approved.json()["decision"]["decidedBy"] == "ci-operator"
    done = wait_for(
        lambda: admin.get(f"/v1/opscore/sessions/{sid}").json()["status"] == "completed"
    )
    assert done


def test_denials_are_logged_with_the_key_name_never_the_key(secured) -> None:
    server, c, _ = secured
    c["viewer"].post("/v1/opscore/workflows/wf/runs", json={})
    c["agent"].post("/v1/opscore/agent/other-agent/state", json=state("other-agent"))
    httpx.get(server.url + "/v1/opscore/agents", headers={"X-API-Key": "guess-1234"})
    records = server.app.state.services.logs.snapshot()
    denied = [
        r for r in records if r["message"] in ("permission denied", "agent not allowed for key")
    ]
    assert {r["keyName"] for r in denied} == {"dashboard-viewer", "summarizer-agent"}
    text = repr(records)
    for secret in [*KEYS.values(), KEY, "guess-1234"]:
        assert secret not in text


def test_keys_rotate_without_restart(secured) -> None:
    server, c, keys_file = secured
    write_keys(
        keys_file,
        extra=f"""  - name: new-admin
    role: admin
    key: {KEYS["admin2"]}
""",
    )
    os.utime(keys_file, (time.time() + 5, time.time() + 5))
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEYS["admin2"]}) as new:
        assert new.get("/v1/opscore/agents").status_code == 200
    keys_file.write_text("keys: []\n")
    os.utime(keys_file, (time.time() + 10, time.time() + 10))
    assert c["viewer"].get("/v1/opscore/agents").status_code == 401
    assert c["admin"].get("/v1/opscore/agents").status_code == 200  # settings key stays admin


def test_broken_keys_file_keeps_the_previous_keys(secured) -> None:
    _, c, keys_file = secured
    keys_file.write_text("keys: [ {name: broken")
    os.utime(keys_file, (time.time() + 5, time.time() + 5))
    assert c["viewer"].get("/v1/opscore/agents").status_code == 200


def test_result_reports_are_scoped_to_the_agents_own_tasks(fleet_factory, tmp_path) -> None:
    keys_file = tmp_path / "keys.yaml"
    write_keys(keys_file)
    server, fleet = fleet_factory(make_settings(keys_file=keys_file))
    fleet.add("other-agent", Behaviour(kind="hang"))
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as admin:
        create(admin, template("h", task("a")))
        sid = admin.post("/v1/opscore/workflows/h/runs", json={}).json()["sessionId"]
        wait_for(lambda: fleet.per_agent["other-agent"] == 1)
        task_id = admin.get(f"/v1/opscore/sessions/{sid}").json()["tasks"][0]["taskId"]
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEYS["agent"]}) as agent:
        forged = agent.post(f"/v1/opscore/tasks/{task_id}/result", json={"status": "completed"})
    assert forged.status_code == 403


def test_rate_limit_answers_429_with_retry_after(server_factory) -> None:
    server = server_factory(make_settings(rate_limit_per_second=5, rate_limit_burst=5))
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as c:
        codes = [c.get("/v1/opscore/agents").status_code for _ in range(12)]
        assert codes[:5] == [200] * 5 and 429 in codes
        limited = c.get("/v1/opscore/agents")
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
        assert limited.json()["error"]["code"] == "RATE_LIMITED"
        assert httpx.get(server.url + "/health").status_code == 200


def test_cors_is_off_unless_configured(server_factory) -> None:
    off = server_factory()
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    r = httpx.options(off.url + "/v1/opscore/agents", headers=preflight)
    assert "access-control-allow-origin" not in r.headers
    on = server_factory(make_settings(cors_origins="https://ops.example"))
    ok = httpx.options(
        on.url + "/v1/opscore/agents", headers={**preflight, "Origin": "https://ops.example"}
    )
    assert ok.headers.get("access-control-allow-origin") == "https://ops.example"


def test_anonymous_requests_get_401_before_any_body_is_read(anon: httpx.Client) -> None:
    for body in (b"{not json", b"\xff\xfe", b"[" * 10000):
        r = anon.post(
            "/v1/opscore/agents", content=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert anon.get("/v1/opscore/no-such-route").status_code == 401


def test_hostile_input_never_breaks_the_service(client: httpx.Client) -> None:
    huge = template(
        "huge", *[task(f"t{i}", dependsOn=[f"t{i - 1}"] if i else []) for i in range(5000)]
    )
    r = client.post("/v1/opscore/workflows", json=huge)
    assert r.status_code in (413, 422)
    deep = '{"agentName": "x", "metadata": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}"
    r = client.post(
        "/v1/opscore/agents", content=deep, headers={"Content-Type": "application/json"}
    )
    assert r.status_code in (201, 400, 422)
    deep_params = template(
        "deep",
        task(
            "a",
            parameters={
                "x": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]
            },
        ),
    )
    assert client.post("/v1/opscore/workflows", json=deep_params).status_code == 422
    for path in (
        "/v1/opscore/agents/..%2F..%2Fetc%2Fpasswd",
        "/v1/opscore/agents/%00",
        "/v1/opscore/agent/a%2Fb/state",
        "/v1/opscore/sessions/..",
        "/v1/opscore/tasks/%20",
    ):
        assert client.get(path).status_code in (404, 422), path
    long_name = client.post("/v1/opscore/agents", json={"agentName": "x" * 10_000})
    assert long_name.status_code == 422
    bad_utf8 = client.post(
        "/v1/opscore/workflows",
        content=b"id: \xff\xfe\ntasks: []",
        headers={"Content-Type": "application/yaml"},
    )
    assert bad_utf8.status_code == 400
    yaml_bomb = (
        b"a: &a [1,1,1,1,1,1,1,1,1]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        b"d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nid: bomb\ntasks: [{taskId: a}]\n"
    )
    assert client.post(
        "/v1/opscore/workflows", content=yaml_bomb, headers={"Content-Type": "application/yaml"}
    ).status_code in (201, 400, 422)
    python_tag = b"id: x\ntasks: [{taskId: a}]\nevil: !!python/object/apply:os.system ['true']\n"
    assert (
        client.post(
            "/v1/opscore/workflows",
            content=python_tag,
            headers={"Content-Type": "application/yaml"},
        ).status_code
        == 400
    )
    assert client.get("/health").status_code == 200
