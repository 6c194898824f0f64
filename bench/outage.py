"""A 10-second store outage in the middle of 200 runs: does every run complete, how soon does
dispatch resume once the store is back, and does any task run twice? Ops-Core (`opscore serve`)
on Redis with an append-only file (stopped, then started), or on PostgreSQL (every process of
the cluster SIGKILLed, then started: crash recovery); 8 agents in this process that answer each
task with its result (as AgentKit's example agent does) and count every hand-over by task id.
Prints one JSON line.

    python -m bench.outage --runs 200 --outage 10 [--store postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
from aiohttp import web

from .common import KEEPALIVE, KEY, free_port, opscore_cmd, opscore_env, process

AGENTS = 8
TEMPLATE = {
    "id": "outage",
    "version": "1",
    "tasks": [
        {"taskId": "a", "agentCapability": "work", "nextTaskId": "b", "timeoutSeconds": 5},
        {"taskId": "b", "agentCapability": "work", "nextTaskId": "c", "timeoutSeconds": 5},
        {"taskId": "c", "agentCapability": "work", "timeoutSeconds": 5},
    ],
}


def _redis(port: int, directory: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def _agents(deliveries: Counter[str], handed: list[float]) -> tuple[web.AppRunner, int]:
    async def handle(request: web.Request) -> web.Response:
        message = await request.json()
        deliveries[message["opscore_task_id"]] += 1
        handed.append(time.monotonic())
        await asyncio.sleep(0.02)  # the work, inside the request
        return web.json_response({"status": "completed", "result": "ok"})

    app = web.Application()
    app.router.add_post("/{agent}/", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def _drive(url: str, redis: dict[str, object], runs: int, outage: float) -> dict[str, float]:
    deliveries: Counter[str] = Counter()
    handed: list[float] = []
    runner, agent_port = await _agents(deliveries, handed)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE)
    ) as http:
        for i in range(AGENTS):
            body = {
                "agentId": f"agent-{i}",
                "agentName": "a",
                "capabilities": ["work"],
                "contactEndpoint": f"http://127.0.0.1:{agent_port}/agent-{i}/",
            }
            await http.post(f"{url}/v1/opscore/agents", json=body)
            state = {
                "agentId": f"agent-{i}",
                "timestamp": "2026-12-01T00:00:00+00:00",
                "state": "idle",
            }
            await http.post(f"{url}/v1/opscore/agent/agent-{i}/state", json=state)
        await http.post(f"{url}/v1/opscore/workflows", json=TEMPLATE)
        sessions = []
        for i in range(runs):
            if i == runs // 2:  # the outage, half-way through starting the runs
                redis["stop"]()  # type: ignore[operator]
                await asyncio.sleep(outage)
                redis["start"]()  # type: ignore[operator]
                back = time.monotonic()
            while True:  # a trigger refused with 503 during the outage is retried
                async with http.post(f"{url}/v1/opscore/workflows/outage/runs", json={}) as r:
                    if r.status == 202:
                        sessions.append((await r.json())["sessionId"])
                        break
                await asyncio.sleep(0.2)
        deadline = time.monotonic() + 180
        statuses: Counter[str] = Counter()
        while time.monotonic() < deadline:
            statuses = Counter()
            for sid in sessions:
                async with http.get(f"{url}/v1/opscore/sessions/{sid}") as r:
                    statuses[
                        (await r.json()).get("status", "?") if r.status == 200 else "error"
                    ] += 1
            if statuses["completed"] == runs:
                break
            await asyncio.sleep(1)
    await runner.cleanup()
    resumed = min((t - back for t in handed if t >= back), default=float("nan"))
    return {
        "runs": runs,
        "outage_seconds": outage,
        "completed": statuses["completed"],
        "not_completed": runs - statuses["completed"],
        "dispatch_resumed_after_s": resumed,
        "tasks_handed_over": sum(deliveries.values()),
        "tasks_handed_over_twice": sum(1 for n in deliveries.values() if n > 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--outage", type=float, default=10)
    parser.add_argument("--store", choices=["redis", "postgresql"], default="redis")
    args = parser.parse_args()
    if args.store == "postgresql":
        result = _on_postgresql(args.runs, args.outage)
        print(json.dumps({"store": "postgresql", **result}))
        return
    with tempfile.TemporaryDirectory() as tmp:
        redis_port = free_port()
        proc = {"p": _redis(redis_port, Path(tmp))}
        time.sleep(0.5)

        def stop() -> None:
            proc["p"].terminate()
            proc["p"].wait(10)

        def start() -> None:
            proc["p"] = _redis(redis_port, Path(tmp))
            time.sleep(0.3)

        port = free_port()
        env = opscore_env(
            port,
            OPSCORE_STORAGE_URL=f"redis://127.0.0.1:{redis_port}/0",
            OPSCORE_ACCESS_LOG="false",
            OPSCORE_LOG_LEVEL="WARNING",
        )
        try:
            with process(opscore_cmd(), env=env, ready_url=f"http://127.0.0.1:{port}/health"):
                result = asyncio.run(
                    _drive(
                        f"http://127.0.0.1:{port}",
                        {"stop": stop, "start": start},
                        args.runs,
                        args.outage,
                    )
                )
        finally:
            stop()
    print(json.dumps({"store": "redis", **result}))


def _on_postgresql(runs: int, outage: float) -> dict[str, float]:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.storage_servers import PostgresServer

    server = PostgresServer().start()
    port = free_port()
    env = opscore_env(
        port,
        OPSCORE_STORAGE_URL=server.url,
        OPSCORE_ACCESS_LOG="false",
        OPSCORE_LOG_LEVEL="WARNING",
    )
    try:
        with process(opscore_cmd(), env=env, ready_url=f"http://127.0.0.1:{port}/health"):
            return asyncio.run(
                _drive(
                    f"http://127.0.0.1:{port}",
                    {"stop": server.kill, "start": server.resume},
                    runs,
                    outage,
                )
            )
    finally:
        server.remove()


if __name__ == "__main__":
    main()
