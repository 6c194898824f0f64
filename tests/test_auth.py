"""API keys on every endpoint."""

from __future__ import annotations

import httpx
import pytest

from opscore.api import create_app
from opscore.errors import ConfigError

from .conftest import KEY, make_settings
from .servers import wait_for

PROTECTED = [
    ("GET", "/v1/opscore/agents"),
    ("POST", "/v1/opscore/agents"),
    ("GET", "/v1/opscore/agent/x/state"),
    ("POST", "/v1/opscore/agent/x/state"),
    ("GET", "/v1/opscore/workflows"),
    ("GET", "/v1/opscore/sessions"),
    ("GET", "/v1/opscore/dead-letters"),
    ("GET", "/v1/opscore/logs"),
]


@pytest.mark.parametrize(("method", "path"), PROTECTED)
def test_protected_routes_need_a_key(anon: httpx.Client, method: str, path: str) -> None:
    response = anon.request(method, path, json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "MISSING_API_KEY"
    wrong = anon.request(method, path, json={}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "INVALID_API_KEY"


def test_bearer_and_x_api_key_are_both_accepted(anon: httpx.Client) -> None:
    assert (
        anon.get("/v1/opscore/agents", headers={"Authorization": f"Bearer {KEY}"}).status_code
        == 200
    )
    assert anon.get("/v1/opscore/agents", headers={"X-API-Key": KEY}).status_code == 200


def test_health_and_ready_need_no_key(anon: httpx.Client) -> None:
    assert anon.get("/health").json()["status"] == "ok"
    ready = anon.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["storage"] == "ok"


def test_several_keys_are_accepted(server_factory) -> None:
    server = server_factory(make_settings(api_key=None, api_keys="first-key-aaaa,second-key-bbbb"))
    with httpx.Client(base_url=server.url) as c:
        for key in ("first-key-aaaa", "second-key-bbbb"):
            assert c.get("/v1/opscore/agents", headers={"X-API-Key": key}).status_code == 200
        assert c.get("/v1/opscore/agents", headers={"X-API-Key": "third"}).status_code == 401


def test_no_key_configured_refuses_to_start() -> None:
    with pytest.raises(ConfigError, match="No API key"):
        create_app(make_settings(api_key=None))


def test_keys_never_appear_in_logs(server, client: httpx.Client, anon: httpx.Client) -> None:
    client.get("/v1/opscore/agents")
    anon.get("/v1/opscore/agents", headers={"Authorization": "Bearer not-the-key-zzz"})
    wait_for(
        lambda: (
            sum(r["logger"] == "opscore.access" for r in server.app.state.services.logs.snapshot())
            >= 2
        )
    )
    records = server.app.state.services.logs.snapshot()
    text = repr(records)
    assert KEY not in text and "not-the-key-zzz" not in text
