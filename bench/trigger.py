"""CPU per run trigger: the gateway's fast route against FastAPI's documented route.

``python -m bench.trigger [--count 3000] [--rounds 3]`` builds the app on memory:// in this
process, stores a three-step template and, in alternated rounds, sends ``--count`` calls of
``POST /v1/opscore/workflows/chain3/runs`` (body ``{}``, an admin key) as ASGI calls: through the
whole app, where the gateway answers them itself (``opscore/http/run_trigger.py``), and, as the
peer, the same calls straight to FastAPI (``app.fastapi``: its routing, dependencies and
serialisation, as every trigger went before). A third line starts the same runs by calling the
service (``Workflow.run_template``) with no HTTP at all: the floor. No agent is registered, so
the runs stay queued; both sides add the same number to the store. The interpreter runs with
``opscore serve``'s settings (``tune_runtime``: the GC's, logging's), logging to /dev/null. Prints one JSON line: CPU microseconds per
trigger on each path per round, their medians, and the fast route's median against the peer's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opscore.api import OpsCoreApp, create_app
from opscore.config import Settings
from opscore.models import RunCreate
from opscore.serve import tune_runtime

from .common import KEY
from .run import CHAIN

PATH = "/v1/opscore/workflows/chain3/runs"
HEADERS = [(b"x-api-key", KEY.encode()), (b"content-type", b"application/json")]

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def _post(app: Asgi, path: str, body: bytes) -> int:
    """One ASGI POST; its status."""
    incoming = [{"type": "http.request", "body": body, "more_body": False}]
    status = [0]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": HEADERS,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    return status[0]


async def _per_call(count: int, call: Callable[[], Awaitable[object]]) -> float:
    """CPU microseconds per call (process time: the calls never wait on anything outside)."""
    started = time.process_time()
    for _ in range(count):
        await call()
    return (time.process_time() - started) / count * 1e6


async def _measure(count: int, rounds: int) -> dict[str, Any]:
    app = create_app(Settings(api_key=KEY, access_log=False))
    assert isinstance(app, OpsCoreApp)
    services = app.state.services
    tune_runtime()
    async with app.router.lifespan_context(app):
        created = await _post(app, "/v1/opscore/workflows", json.dumps(CHAIN).encode())
        assert created == 201, created

        async def fast() -> None:
            assert await _post(app, PATH, b"{}") == 202

        async def peer() -> None:
            assert await _post(app.fastapi, PATH, b"{}") == 202

        async def floor() -> None:
            await services.workflow.run_template("chain3", RunCreate())

        for warm in (fast, peer, floor):
            await _per_call(200, warm)
        paths: dict[str, list[float]] = {"fast_route": [], "fastapi_route": [], "no_http": []}
        for _ in range(rounds):
            paths["fast_route"].append(await _per_call(count, fast))
            paths["fastapi_route"].append(await _per_call(count, peer))
            paths["no_http"].append(await _per_call(count, floor))
    medians = {name: statistics.median(values) for name, values in paths.items()}
    return {
        "triggers": count,
        **{
            f"us_per_trigger_{name}": [round(v, 1) for v in values]
            for name, values in paths.items()
        },
        "median_ratio_fast_to_fastapi": round(medians["fast_route"] / medians["fastapi_route"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
        result = asyncio.run(_measure(args.count, args.rounds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
