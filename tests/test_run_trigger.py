"""The gateway answers a template's run trigger itself (opscore/http/run_trigger.py) when the call
is well formed, and hands the rest to FastAPI's documented route: both must answer alike."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from opscore.api import create_app

from .conftest import make_settings
from .servers import KEY
from .test_security import KEYS, write_keys
from .workflow_helpers import task, template

TEMPLATE = template("chain", task("a", nextTaskId="b"), task("b"), version="1")
JSON = {"Content-Type": "application/json"}

# (key, workflow id, body, extra headers)
CASES: list[tuple[str, str, Any, dict[str, str]]] = [
    (KEY, "chain", {}, {}),
    (
        KEY,
        "chain",
        {"initialPayload": {"topic": "agents", "n": 10**30}, "metadata": {"by": "ci"}},
        {},
    ),
    (KEY, "chain", {"version": "1"}, {}),
    (KEY, "chain", {"version": "9"}, {}),  # unknown version: 404 from the service
    (KEY, "nope", {}, {}),  # unknown template: 404 from the service
    (KEY, "-bad", {}, {}),  # the path's pattern: 422
    (KEY, "chain", {"agentId": "ghost"}, {}),  # pinned to an agent that is not registered
    (KEY, "chain", {"agentId": "-bad"}, {}),
    (KEY, "chain", {"initialPayload": "text"}, {}),
    (KEY, "chain", {"unknownField": 1}, {}),
    (KEY, "chain", {"initialPayload": {"é": "\u00e9\ud83d\ude00"}}, {}),
    (KEY, "chain", [], {}),
    (KEY, "chain", None, {}),
    (KEY, "chain", b"", {}),
    (KEY, "chain", b"{not json", {}),
    (KEY, "chain", b"\xff\xfe", {}),
    (KEY, "chain", b'{"initialPayload": {"x": NaN}}', {}),
    (KEY, "chain", b'{"initialPayload": {"x": 1}, "initialPayload": {"x": 2}}', {}),
    (KEY, "chain", {}, {"Content-Type": "text/plain"}),
    (KEY, "chain", {}, {"Content-Type": "application/json; charset=utf-8"}),
    (KEY, "chain", {}, {"Content-Type": "application/merge-patch+json"}),
    (KEY, "chain", {"initialPayload": {"k": 1}}, {"Idempotency-Key": "order-1"}),
    (KEY, "chain", {"initialPayload": {"k": 1}}, {"Idempotency-Key": "order-1"}),  # replay
    (KEY, "chain", {"initialPayload": {"k": 2}}, {"Idempotency-Key": "order-1"}),  # reused
    (KEY, "chain", {}, {"Idempotency-Key": "has space"}),
    (KEY, "chain", {}, {"Idempotency-Key": "x" * 201}),
    (KEYS["viewer"], "chain", {}, {}),  # may read, not run: 403
    (KEYS["viewer"], "-bad", b"{not json", {}),  # FastAPI reads the body first: 400
    (KEYS["agent"], "chain", {}, {}),
    (KEYS["ops"], "chain", {}, {}),
]


def _content(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


async def _answers(keys_file: Path, through_gateway: bool) -> list[tuple[int, Any]]:
    app = create_app(make_settings(access_log=False, keys_file=keys_file))
    asgi = app if through_gateway else app.fastapi
    out: list[tuple[int, Any]] = []
    await app.state.services.start()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=asgi), base_url="http://t"
        ) as c:
            r = await c.post("/v1/opscore/workflows", json=TEMPLATE, headers={"X-API-Key": KEY})
            assert r.status_code == 201, r.text
            for key, workflow, body, headers in CASES:
                r = await c.post(
                    f"/v1/opscore/workflows/{workflow}/runs",
                    content=_content(body),
                    headers={"X-API-Key": key, **JSON, **headers},
                )
                payload = r.json()
                payload.pop("requestId", None)  # only the gateway assigns request ids
                payload.pop("sessionId", None)  # each run's own
                out.append((r.status_code, payload))
    finally:
        await app.state.services.stop()
    return out


def test_the_fast_route_answers_exactly_like_the_documented_route(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.yaml"
    write_keys(keys_file)
    fast = asyncio.run(_answers(keys_file, True))
    documented = asyncio.run(_answers(keys_file, False))
    statuses = [status for status, _ in fast]
    assert statuses == [
        202, 202, 202, 404, 404, 422, 404, 422, 422, 202, 202, 422, 422, 202, 400, 400,
        202, 202, 422, 202, 202, 202, 202, 422, 422, 422, 403, 400, 403, 202,
    ]  # fmt: skip
    assert fast == documented
    assert fast[22][1]["duplicate"] is True and fast[21][1]["duplicate"] is False


def test_a_well_formed_trigger_never_reaches_fastapi_and_anything_else_does(
    tmp_path: Path,
) -> None:
    """The gateway answers what it can vouch for; what it would refuse goes to FastAPI intact
    (body included), which answers it as documented."""
    keys_file = tmp_path / "keys.yaml"
    write_keys(keys_file)

    async def run() -> list[tuple[str, int]]:
        app = create_app(make_settings(access_log=False, keys_file=keys_file))
        gateway: Any = app.gateway
        inner = gateway.app
        reached: list[str] = []

        async def recorded(scope: Any, receive: Any, send: Any) -> None:
            reached.append(scope["path"])
            await inner(scope, receive, send)

        gateway.app = recorded
        out = []
        await app.state.services.start()
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://t"
            ) as c:
                admin = {"X-API-Key": KEY, **JSON}
                await c.post("/v1/opscore/workflows", json=TEMPLATE, headers=admin)
                reached.clear()
                calls: list[tuple[str, dict[str, str], bytes]] = [
                    ("fast", admin, b'{"initialPayload": {"a": 1}}'),
                    ("fast", {**admin, "Idempotency-Key": "k-1"}, b"{}"),
                    ("fastapi", admin, b""),
                    ("fastapi", admin, b'{"initialPayload": 3}'),
                    ("fastapi", {**admin, "Idempotency-Key": "a b"}, b"{}"),
                    ("fastapi", {"X-API-Key": KEYS["viewer"], **JSON}, b"{}"),
                ]
                for expected, headers, body in calls:
                    before = len(reached)
                    r = await c.post(
                        "/v1/opscore/workflows/chain/runs", content=body, headers=headers
                    )
                    out.append((("fastapi" if len(reached) > before else "fast"), r.status_code))
                    assert expected == out[-1][0], (body, r.text)
        finally:
            await app.state.services.stop()
        return out

    assert asyncio.run(run()) == [
        ("fast", 202), ("fast", 202), ("fastapi", 202), ("fastapi", 422), ("fastapi", 422),
        ("fastapi", 403),
    ]  # fmt: skip
