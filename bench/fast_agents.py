"""A separate process of fast no-op agents: each acknowledges a task at once (202), then reports
``active`` and ``idle`` (with the task id and a result) as AgentKit agents do.

    python -m bench.fast_agents --opscore http://127.0.0.1:8000 --key KEY --agents 8 --port 9100

With several ``--opscore`` URLs (replicas), reports go to them in turn, as a round-robin load
balancer in front of the replicas would send them; with ``--reports agent``, each agent's
reports go to one replica, as a load balancer that hashes on the agent's id sends them
(deploy/nginx.conf).

This process is load, not what is measured, so it is built on aiohttp (C-accelerated HTTP
parsing for server and client): the first version, FastAPI and httpx, used as much CPU as
Ops-Core itself on the shared 2 cores and so capped the figure it was meant to measure.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
from datetime import UTC, datetime
from typing import Any

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

from .common import KEEPALIVE

HEALTH_PATH = "/health"


class FastAgents:
    def __init__(
        self,
        opscore: list[str],
        key: str,
        agents: int,
        port: int,
        capability: str,
        *,
        by_agent: bool = False,
    ) -> None:
        self.opscore = opscore[0].rstrip("/")  # registrations
        urls = [u.rstrip("/") for u in opscore]
        self.replicas = itertools.cycle(urls)  # reports, in turn
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.agent_ids = [f"fast-{i}" for i in range(agents)]
        # or each agent's to one replica
        self.replica_of = {a: urls[i % len(urls)] for i, a in enumerate(self.agent_ids)}
        self.by_agent = by_agent
        self.port = port
        self.capability = capability
        self.session: ClientSession | None = None
        self.pending: set[asyncio.Task[None]] = set()

    async def report(self, agent_id: str, state: str, details: dict[str, Any]) -> None:
        assert self.session is not None
        body = {
            "agentId": agent_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "state": state,
            "details": details,
        }
        replica = self.replica_of[agent_id] if self.by_agent else next(self.replicas)
        url = f"{replica}/v1/opscore/agent/{agent_id}/state"
        async with self.session.post(url, data=json.dumps(body), headers=self.headers) as r:
            await r.read()

    async def work(self, agent_id: str, task_id: str) -> None:
        await self.report(agent_id, "active", {"opscore_task_id": task_id})
        await self.report(agent_id, "idle", {"opscore_task_id": task_id, "result": {"ok": True}})

    async def receive(self, request: web.Request) -> web.Response:
        message = await request.json()
        task = asyncio.create_task(
            self.work(request.match_info["agent_id"], message["opscore_task_id"])
        )
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)
        return web.Response(status=202)

    async def health(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def start(self, _app: web.Application) -> None:
        self.session = ClientSession(
            connector=TCPConnector(limit=64, keepalive_timeout=KEEPALIVE),
            timeout=ClientTimeout(total=30),
        )
        for agent_id in self.agent_ids:
            registration = {
                "agentId": agent_id,
                "agentName": agent_id,
                "capabilities": [self.capability],
                "contactEndpoint": f"http://127.0.0.1:{self.port}/agents/{agent_id}",
            }
            async with self.session.post(
                f"{self.opscore}/v1/opscore/agents",
                data=json.dumps(registration),
                headers=self.headers,
            ) as r:
                await r.read()
            await self.report(agent_id, "idle", {})

    async def stop(self, _app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/agents/{agent_id}", self.receive)
        app.router.add_get(HEALTH_PATH, self.health)
        app.on_startup.append(self.start)
        app.on_cleanup.append(self.stop)
        return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--opscore", required=True, action="append", help="repeat per replica")
    parser.add_argument("--key", required=True)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--capability", default="noop")
    parser.add_argument(
        "--reports",
        choices=("turn", "agent"),
        default="turn",
        help="replicas take reports in turn, or each agent's reports go to one replica",
    )
    args = parser.parse_args()
    agents = FastAgents(
        args.opscore,
        args.key,
        args.agents,
        args.port,
        args.capability,
        by_agent=args.reports == "agent",
    )
    web.run_app(agents.app(), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
