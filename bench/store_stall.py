"""Does a burst of store writes stall other requests? `/health` latency (it touches no store)
while 32 connections send state reports as fast as they can, on SQLite (point calls on the
event loop on a connection that never waits; checkpoints, scans and calls that found the file
locked on the store's own thread) and, as the peer in the same invocation, on memory://.
Prints one JSON line.

    python -m bench.store_stall --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from .common import KEEPALIVE, KEY, free_port, opscore_cmd, opscore_env, process

AGENTS = 64
WRITERS = 32


async def _burst(url: str, seconds: float) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {KEY}"}
    async with aiohttp.ClientSession(
        headers=headers, connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE)
    ) as http:
        for i in range(AGENTS):
            await http.post(f"{url}/v1/opscore/agents", json={"agentId": f"a{i}", "agentName": "a"})
        base = datetime.now(UTC) - timedelta(days=1)
        stop = time.monotonic() + seconds
        sent = [0]

        async def writer(n: int) -> None:
            i = 0
            while time.monotonic() < stop:
                agent = f"a{(n + i * WRITERS) % AGENTS}"
                stamp = (base + timedelta(microseconds=sent[0])).isoformat()
                sent[0] += 1
                i += 1
                body = {"agentId": agent, "timestamp": stamp, "state": "idle", "details": {}}
                async with http.post(f"{url}/v1/opscore/agent/{agent}/state", json=body) as r:
                    await r.read()

        health: list[float] = []

        async def prober() -> None:
            async with aiohttp.ClientSession() as own:  # its own connection, never queued
                while time.monotonic() < stop:
                    started = time.perf_counter()
                    async with own.get(f"{url}/health") as r:
                        await r.read()
                    health.append((time.perf_counter() - started) * 1000)
                    await asyncio.sleep(0.01)

        await asyncio.gather(prober(), *(writer(n) for n in range(WRITERS)))
    health.sort()
    return {
        "reports_per_s": sent[0] / seconds,
        "health_p50_ms": statistics.median(health),
        "health_p99_ms": health[int(len(health) * 0.99) - 1],
        "health_max_ms": health[-1],
    }


def _run(storage_url: str, seconds: float) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = opscore_env(port, OPSCORE_STORAGE_URL=storage_url, OPSCORE_ACCESS_LOG="false")
    with process(opscore_cmd(), env=env, ready_url=f"{url}/health"):
        return asyncio.run(_burst(url, seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = _run(f"sqlite:///{Path(tmp) / 'stall.db'}", args.seconds)
    memory = _run("memory://", args.seconds)
    print(
        json.dumps(
            {
                "seconds": args.seconds,
                "sqlite": sqlite,
                "memory": memory,
                "health_p99_ratio": sqlite["health_p99_ms"] / memory["health_p99_ms"],
            }
        )
    )


if __name__ == "__main__":
    main()
