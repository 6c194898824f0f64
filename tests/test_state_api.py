"""State reports exactly as AgentKit's SDK sends them, and every way they can be wrong."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from opscore.api import create_app

from .conftest import KEY, contract, make_settings
from .test_agents_api import register

AGENT = "3f2b9c1e-7a44-4d0e-9a51-2f6f0c8d1e77"


def report(
    client: httpx.Client, state: str, ts: str, agent: str = AGENT, **details: object
) -> httpx.Response:
    return client.post(
        f"/v1/opscore/agent/{agent}/state",
        json={"agentId": agent, "timestamp": ts, "state": state, "details": details},
    )


def test_agentkit_state_report_is_accepted_with_its_exact_body_and_headers(
    anon: httpx.Client,
) -> None:
    example = contract("state_report.json")
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    anon.post(
        "/v1/opscore/agents", json={"agentId": AGENT, "agentName": "summarizer"}, headers=headers
    )

    response = anon.post(example["path"], json=example["body"], headers=headers)

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "success" and body["message"]
    current = anon.get(f"/v1/opscore/agent/{AGENT}/state", headers=headers).json()
    assert current["state"] == "active"
    assert current["timestamp"].startswith("2026-11-24T10:15:30.123456")


def test_history_is_newest_first_and_paginated(client: httpx.Client) -> None:
    register(client, AGENT)
    for i, state in enumerate(["initializing", "idle", "active", "idle"]):
        assert report(client, state, f"2026-11-24T10:00:0{i}+00:00").status_code == 202
    history = client.get(f"/v1/opscore/agent/{AGENT}/state/history").json()
    assert [r["state"] for r in history["items"]] == ["idle", "active", "idle", "initializing"]
    page = client.get(
        f"/v1/opscore/agent/{AGENT}/state/history", params={"limit": 1, "offset": 1}
    ).json()
    assert page["total"] == 4 and page["items"][0]["state"] == "active"


def test_history_is_bounded_per_agent(server_factory) -> None:
    server = server_factory(make_settings(state_history_limit=3))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        register(client, AGENT)
        for i in range(10):
            report(client, "idle" if i % 2 else "active", f"2026-11-24T10:00:{i:02d}+00:00")
        history = client.get(f"/v1/opscore/agent/{AGENT}/state/history").json()
    assert history["total"] == 3
    assert history["items"][0]["timestamp"].startswith("2026-11-24T10:00:09")


def test_a_history_trimmed_in_steps_shows_the_newest_it_keeps(server_factory, tmp_path) -> None:
    """SQLite trims a history once a quarter of the limit was added (history_trims.py), so it
    may hold a few more than the limit: the API shows the newest ``state_history_limit``,
    with that total, on every page."""
    settings = make_settings(state_history_limit=8, storage_url=f"sqlite:///{tmp_path}/h.db")
    server = server_factory(settings)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        register(client, AGENT)
        for i in range(11):  # trims at the 1st, 3rd ... 11th: 9 held after the 10th
            assert report(client, "idle", f"2026-11-24T10:00:{i:02d}+00:00").status_code == 202
            history = client.get(f"/v1/opscore/agent/{AGENT}/state/history").json()
            assert history["total"] == min(i + 1, 8)
            newest = [r["timestamp"][17:19] for r in history["items"]]
            assert newest == [f"{j:02d}" for j in range(i, max(i - 8, -1), -1)]
        url = f"/v1/opscore/agent/{AGENT}/state/history"
        page = client.get(url, params={"offset": 6, "limit": 5}).json()
        assert page["total"] == 8 and [r["timestamp"][17:19] for r in page["items"]] == ["04", "03"]
        beyond = client.get(url, params={"offset": 8, "limit": 5}).json()
        assert beyond["total"] == 8 and beyond["items"] == []


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (
            {"agentId": "someone-else", "timestamp": "2026-11-24T10:00:00+00:00", "state": "idle"},
            422,
            "AGENT_ID_MISMATCH",
        ),
        (
            {"agentId": AGENT, "timestamp": "2026-11-24T10:00:00+00:00", "state": "dancing"},
            422,
            "UNKNOWN_STATE",
        ),
        (
            {"agentId": AGENT, "timestamp": "yesterday-ish", "state": "idle"},
            422,
            "VALIDATION_ERROR",
        ),
        ({"agentId": AGENT, "timestamp": "2026-11-24T10:00:00+00:00"}, 422, "VALIDATION_ERROR"),
        (
            {"agentId": AGENT, "timestamp": "2026-11-24T10:00:00+00:00", "state": 5},
            422,
            "VALIDATION_ERROR",
        ),
        (
            {
                "agentId": AGENT,
                "timestamp": "2026-11-24T10:00:00+00:00",
                "state": "idle",
                "details": [],
            },
            422,
            "VALIDATION_ERROR",
        ),
    ],
)
def test_bad_reports_get_a_clear_4xx_and_change_nothing(
    client: httpx.Client, body, status, code
) -> None:
    register(client, AGENT)
    report(client, "idle", "2026-11-24T09:00:00+00:00")
    response = client.post(f"/v1/opscore/agent/{AGENT}/state", json=body)
    assert response.status_code == status
    error = response.json()
    assert error["error"]["code"] == code and error["detail"] == error["error"]["message"]
    history = client.get(f"/v1/opscore/agent/{AGENT}/state/history").json()
    assert history["total"] == 1


def test_report_before_registration_is_pending_and_applied_when_the_agent_registers(
    client: httpx.Client,
) -> None:
    """AgentKit's example agent reports idle before AgentKit's webhook registers it, and never
    again: the report waits for the registration instead of being lost."""
    early = report(client, "idle", "2026-11-24T10:00:00+00:00", agent="early")
    assert early.status_code == 202
    assert early.json()["status"] == "pending" and "not registered yet" in early.json()["message"]
    assert client.get("/v1/opscore/agent/early/state").status_code == 404

    register(client, "early")

    current = client.get("/v1/opscore/agent/early/state").json()
    assert current["state"] == "idle" and current["timestamp"].startswith("2026-11-24T10:00:00")
    history = client.get("/v1/opscore/agent/early/state/history").json()
    assert [r["state"] for r in history["items"]] == ["idle"]


def test_only_the_newest_pending_report_is_kept(client: httpx.Client) -> None:
    report(client, "active", "2026-11-24T10:00:05+00:00", agent="early")
    report(client, "idle", "2026-11-24T10:00:01+00:00", agent="early")  # older: not kept
    register(client, "early")
    assert client.get("/v1/opscore/agent/early/state").json()["state"] == "active"


def test_report_for_unknown_agent_is_404_when_pending_reports_are_full(server_factory) -> None:
    server = server_factory(make_settings(pending_reports_max=1))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        assert report(c, "idle", "2026-11-24T10:00:00+00:00", agent="first").status_code == 202
        again = report(c, "active", "2026-11-24T10:00:01+00:00", agent="first")
        assert again.status_code == 202  # the same agent replaces its own pending report
        refused = report(c, "idle", "2026-11-24T10:00:00+00:00", agent="second")
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "AGENT_NOT_FOUND"


def test_out_of_order_report_is_409_and_keeps_the_newer_state(client: httpx.Client) -> None:
    register(client, AGENT)
    report(client, "active", "2026-11-24T10:00:05+00:00")
    late = report(client, "idle", "2026-11-24T10:00:01+00:00")
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "STATE_OUT_OF_ORDER"
    assert client.get(f"/v1/opscore/agent/{AGENT}/state").json()["state"] == "active"


def test_replayed_report_is_acknowledged_once(client: httpx.Client) -> None:
    register(client, AGENT)
    first = report(client, "idle", "2026-11-24T10:00:00+00:00", note="x")
    replay = report(client, "idle", "2026-11-24T10:00:00+00:00", note="x")
    assert first.status_code == replay.status_code == 202
    assert replay.json()["duplicate"] is True
    assert client.get(f"/v1/opscore/agent/{AGENT}/state/history").json()["total"] == 1


def test_timestamps_with_other_offsets_compare_by_instant(client: httpx.Client) -> None:
    register(client, AGENT)
    assert report(client, "active", "2026-11-24T12:00:00+02:00").status_code == 202  # 10:00Z
    assert report(client, "idle", "2026-11-24T10:00:01Z").status_code == 202
    assert report(client, "error", "2026-11-24T11:59:59+02:00").status_code == 409


def test_state_before_first_report_is_200_with_a_null_state(client: httpx.Client) -> None:
    register(client, AGENT)
    response = client.get(f"/v1/opscore/agent/{AGENT}/state")
    assert response.status_code == 200
    assert response.json() == {
        "agentId": AGENT,
        "state": None,
        "timestamp": None,
        "details": {},
        "receivedAt": None,
    }


def test_heartbeat_keeps_an_agent_seen_without_changing_its_state(client: httpx.Client) -> None:
    register(client, AGENT)
    report(client, "idle", "2026-11-24T10:00:00+00:00")
    before = client.get(f"/v1/opscore/agents/{AGENT}").json()["lastSeen"]
    beat = client.post(f"/v1/opscore/agent/{AGENT}/heartbeat")
    assert beat.status_code == 202 and beat.json()["state"] == "idle"
    assert beat.json()["lastSeen"] > before
    assert client.get(f"/v1/opscore/agent/{AGENT}/state/history").json()["total"] == 1
    assert client.post("/v1/opscore/agent/ghost/heartbeat").status_code == 404


def test_the_gateway_fast_path_answers_exactly_like_the_documented_route() -> None:
    """The gateway answers state reports itself (opscore/http/ingest.py); FastAPI's route, reached
    without the gateway, must give the same status and body for every case."""
    good = {"agentId": AGENT, "timestamp": "2026-11-24T10:00:00+00:00", "state": "active"}
    cases: list[tuple[str, object]] = [
        (AGENT, good),
        (AGENT, good),  # replay
        (AGENT, {**good, "timestamp": "2026-11-24T09:00:00+00:00"}),  # out of order
        (AGENT, {**good, "state": "dancing"}),
        (AGENT, {**good, "agentId": "someone-else"}),
        (AGENT, {**good, "timestamp": "yesterday"}),
        (AGENT, {"agentId": AGENT}),
        (AGENT, []),
        (AGENT, b"{not json"),
        (AGENT, b"\xff\xfe"),
        ("ghost", {**good, "agentId": "ghost"}),
        ("-bad", {**good, "agentId": "-bad"}),
        (AGENT, {**good, "timestamp": "2026-11-24T11:00:00Z", "details": None}),
    ]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}

    async def answers(through_gateway: bool) -> list[tuple[int, object]]:
        app = create_app(make_settings(access_log=False))
        asgi = app if through_gateway else app.fastapi
        out: list[tuple[int, object]] = []
        await app.state.services.start()
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=asgi), base_url="http://t", headers=headers
            ) as c:
                r = await c.post("/v1/opscore/agents", json={"agentId": AGENT, "agentName": "a"})
                assert r.status_code == 201
                for agent, body in cases:
                    content = body if isinstance(body, bytes) else json.dumps(body).encode()
                    r = await c.post(f"/v1/opscore/agent/{agent}/state", content=content)
                    payload = r.json()
                    payload.pop("requestId", None)  # only the gateway assigns request ids
                    out.append((r.status_code, payload))
        finally:
            await app.state.services.stop()
        return out

    fast, documented = asyncio.run(answers(True)), asyncio.run(answers(False))
    expected = [202, 202, 409, 422, 422, 422, 422, 422, 400, 400, 202, 422, 202]
    assert [status for status, _ in fast] == expected
    assert fast == documented
