"""CPU per hand-over: Ops-Core's transport (aiohttp) against httpcore, the pool under httpx.

``python -m bench.handover [--requests 4000]`` starts an aiohttp agent server in its own process
on 127.0.0.1, sends the same AgentKit message over 8 agent paths with 8 concurrent senders, and
prints one JSON line per client: CPU time of this process and wall time, per hand-over.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import httpcore
import orjson

from opscore.dispatch.transports import HttpTransport, task_message
from opscore.models import Agent, TaskRun, utcnow

from .common import free_port, wait_http

AGENT_SERVER = """
import sys
from aiohttp import web

async def accept(request):
    await request.read()
    return web.json_response({"status": "accepted"}, status=202)

async def health(request):
    return web.Response(text="ok")

app = web.Application()
app.router.add_post("/agents/{agent_id}", accept)
app.router.add_get("/health", health)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""
AGENTS = 8
Send = Callable[[Agent, TaskRun, dict[str, str]], Awaitable[None]]


def _agents(port: int) -> list[Agent]:
    now = utcnow()
    return [
        Agent(
            agent_id=f"a{i}",
            agent_name="a",
            contact_endpoint=f"http://127.0.0.1:{port}/agents/a{i}",
            last_seen=now,
            registered_at=now,
            updated_at=now,
        )
        for i in range(AGENTS)
    ]


def _task() -> TaskRun:
    return TaskRun(
        task_id="task-1",
        session_id="s",
        step_id="step",
        parameters={"text": "x" * 200},
        timeout_seconds=30,
        max_attempts=1,
        backoff_seconds=0,
        max_backoff_seconds=0,
        created_at=utcnow(),
    )


async def _measure(name: str, send: Send, port: int, requests: int) -> dict[str, object]:
    agents, task = _agents(port), _task()
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    for agent in agents:  # warm: one connection per sender
        await send(agent, task, headers)

    async def sender(agent: Agent) -> None:
        for _ in range(requests // AGENTS):
            await send(agent, task, headers)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(sender(a) for a in agents))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    n = requests // AGENTS * AGENTS
    return {"client": name, "requests": n, "cpu_us": 1e6 * cpu / n, "wall_us": 1e6 * wall / n}


async def _opscore(port: int, requests: int) -> dict[str, object]:
    transport = HttpTransport(None, connect_timeout=30)

    async def send(agent: Agent, task: TaskRun, headers: dict[str, str]) -> None:
        answer = await transport.send(agent, task, headers, timeout=30)
        assert answer.outcome != "failed", answer

    try:
        return await _measure("opscore (aiohttp)", send, port, requests)
    finally:
        await transport.close()


async def _httpcore(port: int, requests: int) -> dict[str, object]:
    timeouts = {"timeout": {"connect": 30, "read": 30, "write": 30, "pool": 30}}
    async with httpcore.AsyncConnectionPool(max_connections=200) as pool:

        async def send(agent: Agent, task: TaskRun, headers: dict[str, str]) -> None:
            assert agent.contact_endpoint is not None
            response = await pool.request(
                "POST",
                agent.contact_endpoint,
                headers=[(b"Content-Type", b"application/json")]
                + [(k.encode(), v.encode()) for k, v in headers.items()],
                content=orjson.dumps(task_message(task)),
                extensions=timeouts,
            )
            assert 200 <= response.status < 300

        return await _measure("httpcore", send, port, requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", AGENT_SERVER, str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        for _ in range(args.rounds):
            for measure in (_opscore, _httpcore):
                print(json.dumps(asyncio.run(measure(port, args.requests))), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
