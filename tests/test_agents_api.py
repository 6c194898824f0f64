"""The agent registry over real HTTP."""

from __future__ import annotations

import httpx


def register(client: httpx.Client, agent_id: str, **fields: object) -> httpx.Response:
    body = {"agentId": agent_id, "agentName": agent_id, "capabilities": ["summarize"], **fields}
    return client.post("/v1/opscore/agents", json=body)


def test_register_get_list_and_deregister_an_agent(client: httpx.Client) -> None:
    created = register(
        client, "summarizer-1", version="1.2.0", contactEndpoint="http://127.0.0.1:9/"
    )
    assert created.status_code == 201
    agent = created.json()
    assert agent["agentId"] == "summarizer-1"
    assert agent["state"] is None and agent["capabilities"] == ["summarize"]

    assert client.get("/v1/opscore/agents/summarizer-1").json()["version"] == "1.2.0"
    listing = client.get("/v1/opscore/agents").json()
    assert listing["total"] == 1 and listing["items"][0]["agentId"] == "summarizer-1"

    assert client.delete("/v1/opscore/agents/summarizer-1").status_code == 200
    gone = client.get("/v1/opscore/agents/summarizer-1")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "AGENT_NOT_FOUND"


def test_register_without_id_generates_one(client: httpx.Client) -> None:
    response = client.post("/v1/opscore/agents", json={"agentName": "anon"})
    assert response.status_code == 201
    assert len(response.json()["agentId"]) == 36


def test_identical_registration_is_idempotent_but_different_details_conflict(
    client: httpx.Client,
) -> None:
    assert register(client, "a1").status_code == 201
    again = register(client, "a1")
    assert again.status_code == 200
    clash = register(client, "a1", capabilities=["other"])
    assert clash.status_code == 409
    assert clash.json()["error"]["code"] == "AGENT_EXISTS"


def test_list_filters_by_capability_and_state_and_paginates(client: httpx.Client) -> None:
    for i in range(5):
        register(client, f"agent-{i}", capabilities=["even" if i % 2 == 0 else "odd"])
    client.post(
        "/v1/opscore/agent/agent-0/state",
        json={"agentId": "agent-0", "timestamp": "2026-01-01T00:00:00+00:00", "state": "idle"},
    )
    evens = client.get("/v1/opscore/agents", params={"capability": "even"}).json()
    assert [a["agentId"] for a in evens["items"]] == ["agent-0", "agent-2", "agent-4"]
    idle = client.get("/v1/opscore/agents", params={"state": "idle"}).json()
    assert [a["agentId"] for a in idle["items"]] == ["agent-0"]
    page = client.get("/v1/opscore/agents", params={"limit": 2, "offset": 2}).json()
    assert page["total"] == 5 and [a["agentId"] for a in page["items"]] == ["agent-2", "agent-3"]


def test_bad_registrations_get_clear_errors(client: httpx.Client) -> None:
    bad_id = client.post("/v1/opscore/agents", json={"agentId": "../etc/passwd", "agentName": "x"})
    assert bad_id.status_code == 422 and bad_id.json()["error"]["code"] == "VALIDATION_ERROR"
    bad_url = client.post(
        "/v1/opscore/agents", json={"agentName": "x", "contactEndpoint": "ftp://x"}
    )
    assert bad_url.status_code == 422
    assert "contactEndpoint" in bad_url.json()["detail"] or "http" in bad_url.json()["detail"]
    missing = client.post("/v1/opscore/agents", json={})
    assert missing.status_code == 422 and "agentName" in missing.json()["detail"]


def test_unknown_agent_and_bad_path_ids(client: httpx.Client) -> None:
    assert client.get("/v1/opscore/agents/nope").status_code == 404
    assert client.delete("/v1/opscore/agents/nope").status_code == 404
    assert client.get("/v1/opscore/agents/%2e%2e").status_code in (404, 422)
