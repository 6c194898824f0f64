"""What an idle replica spends on the tasks it has in flight: the sweeps' cost.

    python -m bench.inflight [--tasks 2000] [--seconds 10] [--stores memory,sqlite,redis,postgresql]

Per store: one Ops-Core process, agents that accept every task (202) and never answer (an
LLM agent working for an hour), ``--tasks`` one-step runs handed over to them; then, with
nothing else happening, the share of a core the process spends over ``--seconds`` (from
/proc), against the same process with no task in flight (the peer line, same invocation).
On Redis also the reads of the in-flight index and the task records read per second (from a
``MONITOR`` pass). Prints one JSON line per store, then all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from .common import KEY, cpu_seconds, free_port, opscore_cmd, opscore_env, process
from .stores import _start_store, available_stores

PER_AGENT = 1000  # the most slots one agent may declare (maxConcurrency)
WATCH = 5.0  # seconds of MONITOR on Redis


def _busy_agents(port: int) -> None:
    """Agents that take every task (202) and never report: served from a thread."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"status": "accepted"}, status=202)

    app = web.Application()
    app.router.add_post("/agents/{agent}", accept)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    threading.Thread(target=loop.run_forever, daemon=True).start()


def _hand_over(client: httpx.Client, base: str, agents_port: int, tasks: int) -> None:
    """Register enough busy agents, start ``tasks`` runs, wait until none is queued."""
    for i in range((tasks + PER_AGENT - 1) // PER_AGENT):
        agent = f"busy-{i}"
        client.post(
            "/v1/opscore/agents",
            json={
                "agentId": agent,
                "agentName": agent,
                "capabilities": ["busy"],
                "contactEndpoint": f"http://127.0.0.1:{agents_port}/agents/{agent}",
                "maxConcurrency": PER_AGENT,
                "heartbeatIntervalSeconds": 3600,  # no liveness probes in the window
            },
        ).raise_for_status()
        state = {"agentId": agent, "timestamp": datetime.now(UTC).isoformat(), "state": "idle"}
        client.post(f"/v1/opscore/agent/{agent}/state", json=state).raise_for_status()
    template = {"id": "hour", "name": "an hour's work", "version": "1", "tasks": [
        {"taskId": "a", "agentCapability": "busy", "timeoutSeconds": 3600}
    ]}  # fmt: skip
    client.post("/v1/opscore/workflows", json=template).raise_for_status()

    async def trigger() -> None:
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": KEY}, timeout=60) as c:
            gate = asyncio.Semaphore(32)

            async def one() -> None:
                async with gate:
                    (await c.post("/v1/opscore/workflows/hour/runs", json={})).raise_for_status()

            await asyncio.gather(*(one() for _ in range(tasks)))

    asyncio.run(trigger())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if _accepted(client.get("/metrics").text) >= tasks:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{tasks} tasks were not all handed over within 300 s")


def _accepted(metrics: str) -> float:
    """Hand-overs the agents accepted so far (``opscore_dispatches_total``)."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("opscore_dispatches_total{") and 'outcome="accepted"' in line
    )


def _idle_share(store: str, tasks: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        url, port = _start_store(store, stack, Path(tmp))
        http_port, agents_port = free_port(), free_port()
        base = f"http://127.0.0.1:{http_port}"
        _busy_agents(agents_port)
        env = opscore_env(http_port, OPSCORE_ACCESS_LOG="false", OPSCORE_STORAGE_URL=url)
        proc = stack.enter_context(process(opscore_cmd(), env=env, ready_url=f"{base}/health"))
        client = stack.enter_context(
            httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=60)
        )
        if tasks:
            _hand_over(client, base, agents_port, tasks)
        time.sleep(3)  # let the hand-overs' tail (spans, logs, the telemetry channel) settle
        cpu, start = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        spent, elapsed = cpu_seconds(proc.pid) - cpu, time.monotonic() - start
        out: dict[str, Any] = {"in_flight": tasks, "core_share": round(spent / elapsed, 4)}
        if store == "redis" and port:
            out.update(_inflight_reads(port, WATCH))
        return out


def _inflight_reads(port: int, seconds: float) -> dict[str, float]:
    """Reads of the in-flight index, and task records read, per second, from a MONITOR pass
    (after the CPU window: MONITOR costs Redis, not the process measured). The index is the
    set ``opscore:inflight`` before the sweeps read only what is due, the sorted set
    ``opscore:inflight:due`` after."""
    import redis

    reads = records = 0
    stop = time.monotonic() + seconds
    with redis.Redis(port=port) as client, client.monitor() as monitor:
        for command in monitor.listen():
            words = command["command"].split(" ")
            verb, key = words[0].upper(), words[1] if len(words) > 1 else ""
            if (verb, key) in (
                ("SMEMBERS", "opscore:inflight"),
                ("ZRANGEBYSCORE", "opscore:inflight:due"),
            ):
                reads += 1
            elif verb == "MGET":
                records += sum(w.startswith("opscore:task:") for w in words[1:])
            if time.monotonic() >= stop:
                break
    return {
        "inflight_reads_per_s": round(reads / seconds, 2),
        "task_records_read_per_s": round(records / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stores", default="memory,sqlite,redis,postgresql")
    args = parser.parse_args()
    result: dict[str, Any] = {}
    for store in available_stores(args.stores):
        busy = _idle_share(store, args.tasks, args.seconds)
        idle = _idle_share(store, 0, args.seconds)
        result[store] = {"busy": busy, "idle": idle}
        print(json.dumps({store: result[store]}), flush=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
