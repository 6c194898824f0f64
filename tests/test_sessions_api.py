"""Ad-hoc sessions: start, update, get, list."""

from __future__ import annotations

import httpx

from .test_agents_api import register


def test_start_update_get_and_list_sessions(client: httpx.Client) -> None:
    register(client, "worker-1")
    started = client.post(
        "/v1/opscore/sessions", json={"agentId": "worker-1", "name": "chat", "metadata": {"a": 1}}
    )
    assert started.status_code == 201
    session = started.json()
    assert session["status"] == "running" and session["kind"] == "adhoc"
    sid = session["sessionId"]

    updated = client.patch(f"/v1/opscore/sessions/{sid}", json={"metadata": {"b": 2}})
    assert updated.json()["metadata"] == {"a": 1, "b": 2}
    closed = client.patch(f"/v1/opscore/sessions/{sid}", json={"status": "completed"})
    assert closed.status_code == 200 and closed.json()["finishedAt"]

    again = client.patch(f"/v1/opscore/sessions/{sid}", json={"status": "running"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "ILLEGAL_TRANSITION"

    detail = client.get(f"/v1/opscore/sessions/{sid}").json()
    assert detail["status"] == "completed" and detail["tasks"] == []
    listing = client.get(
        "/v1/opscore/sessions", params={"agentId": "worker-1", "status": "completed"}
    ).json()
    assert [s["sessionId"] for s in listing["items"]] == [sid]


def test_session_for_unknown_agent_or_id_is_404(client: httpx.Client) -> None:
    assert client.post("/v1/opscore/sessions", json={"agentId": "ghost"}).status_code == 404
    assert client.get("/v1/opscore/sessions/nope").json()["error"]["code"] == "SESSION_NOT_FOUND"
    bad = client.get("/v1/opscore/sessions", params={"status": "sleeping"})
    assert bad.status_code == 422
