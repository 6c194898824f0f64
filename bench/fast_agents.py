"""A separate process of fast no-op agents: each acknowledges a task at once (202), then reports
``active`` and ``idle`` (with the task id and a result) as AgentKit agents do.

    python -m bench.fast_agents --opscore http://127.0.0.1:8000 --key KEY --agents 8 --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response


def build(opscore: str, key: str, agents: int, port: int, capability: str) -> FastAPI:
    client: httpx.AsyncClient | None = None
    pending: set[asyncio.Task[None]] = set()

    async def report(agent_id: str, state: str, details: dict[str, Any]) -> None:
        assert client is not None
        body = {
            "agentId": agent_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "state": state,
            "details": details,
        }
        await client.post(f"/v1/opscore/agent/{agent_id}/state", json=body)

    async def work(agent_id: str, task_id: str) -> None:
        await report(agent_id, "active", {"opscore_task_id": task_id})
        await report(agent_id, "idle", {"opscore_task_id": task_id, "result": {"ok": True}})

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        nonlocal client
        client = httpx.AsyncClient(
            base_url=opscore,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
            limits=httpx.Limits(max_connections=64),
        )
        for i in range(agents):
            agent_id = f"fast-{i}"
            await client.post(
                "/v1/opscore/agents",
                json={
                    "agentId": agent_id,
                    "agentName": agent_id,
                    "capabilities": [capability],
                    "contactEndpoint": f"http://127.0.0.1:{port}/agents/{agent_id}",
                },
            )
            await report(agent_id, "idle", {})
        yield
        await client.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/agents/{agent_id}")
    async def receive(agent_id: str, request: Request) -> Response:
        message = await request.json()
        task = asyncio.create_task(work(agent_id, message["opscore_task_id"]))
        pending.add(task)
        task.add_done_callback(pending.discard)
        return Response(status_code=202)

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opscore", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--capability", default="noop")
    args = parser.parse_args()
    app = build(args.opscore, args.key, args.agents, args.port, args.capability)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
