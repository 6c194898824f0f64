"""A pull worker: it runs the digest workflow's three steps with no open port at all.

It only makes outbound requests to Ops-Core (long-poll claims, lease heartbeats, results), so
it runs behind NAT, a proxy, in a notebook or a batch job. Ctrl-C or SIGTERM stops it
gracefully: it finishes what it holds (for up to 30 s) and hands back the rest.

    OPSCORE_API_KEY=... python examples/worker.py --id worker-1
    opscore workflows create examples/workflows/digest.yaml
    opscore run digest --payload '{"topic": "agents"}' --wait

Environment: OPSCORE_API_URL (default http://127.0.0.1:8000) and OPSCORE_API_KEY.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from opscore.worker import TaskContext, Worker


def make_worker(agent_id: str, *, url: str | None = None, api_key: str | None = None) -> Worker:
    """The worker with its three functions (tests import this)."""
    worker = Worker(agent_id, url=url, api_key=api_key, max_concurrency=2)

    @worker.task("fetch")
    def fetch(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        topic = params.get("topic", "nothing")
        return {"text": f"Three sources on {topic}: one, two, three."}

    @worker.task("summarize")
    def summarize(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        words = str(params.get("text", "")).split()
        return {"text": " ".join(words[: int(params.get("words", 200))])}

    @worker.task("publish")
    async def publish(params: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"published": True, "summary": params.get("summary")}

    return worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--id", default="worker-1", help="the worker's agent id")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    make_worker(args.id).run()


if __name__ == "__main__":
    main()
