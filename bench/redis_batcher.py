"""CPU and wall time per round trip through the Redis store's command batcher, against
redis-py's own client on one connection, in the same invocation.

    python -m bench.redis_batcher [--trips 10000] [--rounds 3]

Each round sends ``--trips`` round trips of a ``GET`` of a 1.5 KB value (about a task record)
through each client in turn: one command at a time (a round trip alone, as one workflow at a
time makes them), then four per turn of the event loop (as under load). Starts its own
redis-server on a free loopback port; prints one JSON line: microseconds of this process's CPU
and of wall time per round trip, per round, their medians, and the batcher's over redis-py's.
Measured on ``storage/redis/batch.py``'s protocol (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.storage_servers import RedisServer  # noqa: E402

Get = Callable[[], Awaitable[Any]]


async def _trips(get: Get, trips: int, width: int) -> tuple[float, float]:
    """CPU and wall microseconds per round trip of ``width`` commands."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(trips):
        if width == 1:
            await get()
        else:
            await asyncio.gather(*(get() for _ in range(width)))
    return (time.process_time() - cpu) / trips * 1e6, (time.perf_counter() - wall) / trips * 1e6


async def _client(name: str, url: str, trips: int, width: int) -> tuple[float, float]:
    import redis.asyncio as aioredis

    from opscore.storage.redis.batch import CommandBatcher

    pool = aioredis.ConnectionPool.from_url(url, decode_responses=True)
    batcher = CommandBatcher(pool)
    client = aioredis.Redis(connection_pool=pool, single_connection_client=True)
    try:
        await client.set("k", "x" * 1500)
        get: Get = (
            (lambda: batcher.call("GET", "k")) if name == "batcher" else (lambda: client.get("k"))
        )
        await _trips(get, 100, width)  # connected and warm
        return await _trips(get, trips, width)
    finally:
        await batcher.close()
        await client.aclose()
        await pool.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trips", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    found: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            for round_ in range(args.rounds):
                for width in (1, 4):
                    names = ["batcher", "redis-py"]
                    for name in names if round_ % 2 == 0 else reversed(names):
                        cpu, wall = asyncio.run(_client(name, server.url, args.trips, width))
                        line = found.setdefault(f"{name}, {width} per turn", {})
                        line.setdefault("cpu_us", []).append(round(cpu, 1))
                        line.setdefault("wall_us", []).append(round(wall, 1))
        finally:
            server.stop()
    out: dict[str, Any] = {}
    for key, line in found.items():
        out[key] = {
            **line,
            "cpu_us_median": statistics.median(line["cpu_us"]),
            "wall_us_median": statistics.median(line["wall_us"]),
        }
    for width in (1, 4):
        ours, theirs = out[f"batcher, {width} per turn"], out[f"redis-py, {width} per turn"]
        out[f"batcher over redis-py, {width} per turn"] = {
            "cpu": round(ours["cpu_us_median"] / theirs["cpu_us_median"], 3),
            "wall": round(ours["wall_us_median"] / theirs["wall_us_median"], 3),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
