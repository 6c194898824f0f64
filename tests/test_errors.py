"""One error shape for every failure; nothing malformed gets a 500."""

from __future__ import annotations

import httpx

from .conftest import KEY, make_settings


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"] and body["detail"] == body["error"]["message"]
    assert body["requestId"] == response.headers["x-request-id"]
    return body


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/opscore/agents", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_envelope(response, 400, "INVALID_JSON")


def test_malformed_utf8_is_4xx(client: httpx.Client) -> None:
    response = client.post(
        "/v1/opscore/agents",
        content=b'{"agentName": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code in (400, 422)
    assert response.json()["error"]["code"] in ("INVALID_JSON", "VALIDATION_ERROR")


def test_wrong_types_are_422_with_details(client: httpx.Client) -> None:
    response = client.post(
        "/v1/opscore/agents", json={"agentName": ["list"], "maxConcurrency": "many"}
    )
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    fields = {tuple(d["loc"]) for d in body["error"]["details"]}
    assert ("body", "agentName") in fields and ("body", "maxConcurrency") in fields


def test_oversize_body_is_413(server_factory) -> None:
    server = server_factory(make_settings(max_body_bytes=2048))
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}) as c:
        big = {"agentName": "x", "metadata": {"blob": "a" * 5000}}
        assert_envelope(c.post("/v1/opscore/agents", json=big), 413, "PAYLOAD_TOO_LARGE")

        def chunks():
            yield b'{"agentName": "x", "metadata": {"blob": "'
            for _ in range(10):
                yield b"a" * 1000
            yield b'"}}'

        streamed = c.post(
            "/v1/opscore/agents", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_envelope(streamed, 413, "PAYLOAD_TOO_LARGE")
        assert c.get("/v1/opscore/agents").json()["total"] == 0


def test_unknown_route_and_method_use_the_envelope(client: httpx.Client) -> None:
    assert_envelope(client.get("/v1/opscore/nothing-here"), 404, "NOT_FOUND")
    assert_envelope(client.put("/v1/opscore/agents"), 405, "METHOD_NOT_ALLOWED")


def test_request_id_is_honoured_or_generated(client: httpx.Client) -> None:
    mine = client.get("/v1/opscore/agents", headers={"X-Request-ID": "trace-me-123"})
    assert mine.headers["x-request-id"] == "trace-me-123"
    generated = client.get("/v1/opscore/agents", headers={"X-Request-ID": "bad id with spaces"})
    assert generated.headers["x-request-id"] != "bad id with spaces"
    assert len(generated.headers["x-request-id"]) == 32


def test_page_size_limit_is_enforced(client: httpx.Client) -> None:
    assert_envelope(
        client.get("/v1/opscore/agents", params={"limit": 100000}), 422, "VALIDATION_ERROR"
    )
    assert_envelope(client.get("/v1/opscore/agents", params={"limit": 501}), 422, "PAGE_TOO_LARGE")
    assert_envelope(
        client.get("/v1/opscore/agents", params={"offset": -1}), 422, "VALIDATION_ERROR"
    )


def test_deeply_nested_json_is_rejected_cleanly(client: httpx.Client) -> None:
    nested = "[" * 5000 + "]" * 5000
    body = '{"agentName": "x", "metadata": {"deep": ' + nested + "}}"
    response = client.post(
        "/v1/opscore/agents", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code in (400, 201, 422)
