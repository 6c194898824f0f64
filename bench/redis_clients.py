"""CPU per Redis command in redis-py: the pooled client against a client with one connection
of its own, one command at a time and 5,000 at once.

    python -m bench.redis_clients

Why RedisStorage uses a few single-connection clients in turn (storage/redis/base.py).
Starts its own redis-server on a free loopback port; prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.storage_servers import RedisServer  # noqa: E402


async def _measure(url: str, single: bool, n: int = 5000) -> dict[str, float]:
    import redis.asyncio as aioredis

    client = aioredis.from_url(url, decode_responses=True, single_connection_client=single)
    await client.set("k", "x" * 1500)  # about a task record's size
    start = time.process_time()
    for _ in range(n):
        await client.get("k")
    one_at_a_time = (time.process_time() - start) / n * 1e6
    start = time.process_time()
    await asyncio.gather(*(client.get("k") for _ in range(n)))
    concurrent = (time.process_time() - start) / n * 1e6
    await client.aclose()
    return {"sequential_us": one_at_a_time, "concurrent_us": concurrent}


def main() -> None:
    server = RedisServer(Path(tempfile.mkdtemp())).start()
    try:
        pooled = asyncio.run(_measure(server.url, single=False))
        single = asyncio.run(_measure(server.url, single=True))
    finally:
        server.stop()
    print(json.dumps({"pooled": pooled, "single_connection": single}))


if __name__ == "__main__":
    main()
