"""Store calls per workflow, by method, on each store: what one three-step workflow asks of
its store, counted inside the process.

    python -m bench.store_calls [--runs 600] [--stores memory,sqlite,redis,postgresql]

Ops-Core runs in this process under uvicorn (``create_app`` with the store's class swapped
for a subclass that counts each call of a ``Storage`` method), the fast agents in their own
process, and the chain of ``bench.run`` is triggered ``--runs`` times after a warm-up. The
count is taken over the measured runs only (the driver's own polls for completed runs
included). Counts, not times: the driver shares this process, so no speed is measured here;
``bench.stores`` measures speed. Prints one JSON line: per store, calls per workflow in all
and by method, largest first.

Earlier notes on issue 14 counted these with a wrapper patched into ``container.py`` by hand;
this makes the count reproducible.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from opscore.api import create_app
from opscore.config import Settings
from opscore.storage import storage_from_url

from .common import KEY, free_port, process
from .run import CHAIN, _run_many, fast_agents_cmd
from .stores import _start_store, available_stores

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.counted_store import counted  # noqa: E402
from tests.servers import ServerThread  # noqa: E402

WARM_UP = 30


def _one_store(name: str, url: str, runs: int) -> dict[str, Any]:
    storage = storage_from_url(url)
    calls = counted(storage)
    settings = Settings(api_key=KEY, storage_url=url, access_log=False)
    with ExitStack() as stack:
        server = stack.enter_context(ServerThread(create_app(settings, storage=storage)))
        with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as c:
            c.post("/v1/opscore/workflows", json=CHAIN).raise_for_status()
        agents = free_port()
        stack.enter_context(
            process(
                fast_agents_cmd(server.url, agents),
                ready_url=f"http://127.0.0.1:{agents}/health",
            )
        )
        asyncio.run(_run_many(server.url, WARM_UP))
        time.sleep(0.5)  # the warm-up's last reports and passes
        before = Counter(calls)
        asyncio.run(_run_many(server.url, runs))
        after = Counter(calls)
    delta = after - before
    return {
        "store": name,
        "store_calls_per_workflow": round(sum(delta.values()) / runs, 2),
        "by_method": {k: round(v / runs, 2) for k, v in delta.most_common()},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=600)
    parser.add_argument("--stores", default="memory,sqlite,redis,postgresql")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in available_stores(args.stores):
            with ExitStack() as stack:
                url, _ = _start_store(name, stack, Path(tempfile.mkdtemp(dir=tmp)))
                results.append(_one_store(name, url, args.runs))
            print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"stores": results}))


if __name__ == "__main__":
    main()
