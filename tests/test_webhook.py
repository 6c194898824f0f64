"""AgentKit's signed registration webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx

from opscore.security.webhook import WebhookVerifier

from .conftest import CONTRACTS, WEBHOOK_SECRET, contract

PATH = "/v1/opscore/internal/agent/notify"
BODY = (CONTRACTS / "webhook_register.body.json").read_bytes()


def signed(body: bytes, ts: int | None = None, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    sig = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "X-AgentKit-Timestamp": stamp,
        "X-AgentKit-Signature": sig,
        "Content-Type": "application/json",
    }


def test_verifier_reproduces_agentkit_test_vector() -> None:
    vector = contract("webhook_register.signature.json")
    verifier = WebhookVerifier(vector["secret"], 300)
    assert (
        verifier.signature(vector["X-AgentKit-Timestamp"], BODY) == vector["X-AgentKit-Signature"]
    )
    verifier.verify(
        vector["X-AgentKit-Timestamp"],
        vector["X-AgentKit-Signature"],
        BODY,
        now=float(vector["X-AgentKit-Timestamp"]) + 10,
    )


def test_register_webhook_creates_agent_without_api_key(
    anon: httpx.Client, client: httpx.Client
) -> None:
    response = anon.post(PATH, content=BODY, headers=signed(BODY))
    assert response.status_code == 200, response.text
    agent = client.get("/v1/opscore/agents/3f2b9c1e-7a44-4d0e-9a51-2f6f0c8d1e77").json()
    assert agent["agentName"] == "summarizer"
    assert agent["capabilities"] == ["summarize", "report_status"]
    assert agent["contactEndpoint"] == "http://127.0.0.1:8101/"
    assert agent["source"] == "webhook"


def test_repeated_register_is_idempotent_and_keeps_state(
    anon: httpx.Client, client: httpx.Client
) -> None:
    anon.post(PATH, content=BODY, headers=signed(BODY))
    agent_id = "3f2b9c1e-7a44-4d0e-9a51-2f6f0c8d1e77"
    client.post(
        f"/v1/opscore/agent/{agent_id}/state",
        json={
            "agentId": agent_id,
            "timestamp": "2026-11-24T10:00:00+00:00",
            "state": "idle",
            "details": {"opscore_task_id": "task-1"},
        },
    )
    assert client.get(f"/v1/opscore/agents/{agent_id}").json()["namesTasks"]
    time.sleep(1.01)  # a fresh timestamp, so a fresh signature (not a replay)
    again = anon.post(PATH, content=BODY, headers=signed(BODY))
    assert again.status_code == 200
    assert client.get("/v1/opscore/agents").json()["total"] == 1
    refreshed = client.get(f"/v1/opscore/agents/{agent_id}").json()
    assert refreshed["state"] == "idle"
    # the agent's program started again, maybe another one: not known to name tasks until
    # a report of it does
    assert not refreshed["namesTasks"]


def test_deregister_webhook_removes_agent(anon: httpx.Client, client: httpx.Client) -> None:
    anon.post(PATH, content=BODY, headers=signed(BODY))
    event = json.loads(BODY)
    event["event_type"] = "DEREGISTER"
    body = json.dumps(event, separators=(",", ":")).encode()
    assert anon.post(PATH, content=body, headers=signed(body)).status_code == 200
    assert client.get("/v1/opscore/agents").json()["total"] == 0


def test_forged_stale_replayed_and_unsigned_webhooks_are_401(
    anon: httpx.Client, client: httpx.Client
) -> None:
    forged = anon.post(PATH, content=BODY, headers=signed(BODY, secret="wrong"))
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "INVALID_SIGNATURE"
    stale = anon.post(PATH, content=BODY, headers=signed(BODY, ts=int(time.time()) - 3600))
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "STALE_WEBHOOK"
    unsigned = anon.post(PATH, content=BODY, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["error"]["code"] == "MISSING_SIGNATURE"
    headers = signed(BODY)
    assert anon.post(PATH, content=BODY, headers=headers).status_code == 200
    replay = anon.post(PATH, content=BODY, headers=headers)
    assert replay.status_code == 401 and replay.json()["error"]["code"] == "REPLAYED_WEBHOOK"
    tampered = BODY.replace(b"summarizer", b"evil-agent")
    assert anon.post(PATH, content=tampered, headers=headers).status_code == 401
    assert client.get("/v1/opscore/agents").json()["total"] == 1


def test_signed_but_invalid_body_is_422(anon: httpx.Client) -> None:
    body = b'{"event_type":"EXPLODE","agent_details":{}}'
    response = anon.post(PATH, content=body, headers=signed(body))
    assert response.status_code == 422
