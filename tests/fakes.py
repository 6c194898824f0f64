"""Background-style fake agents and a fake AgentKit relay, served for real by uvicorn on 127.0.0.1.

Each fake agent acknowledges a ``workflow_task`` message with 202 at once and then, in the
background, reports ``active`` when it starts and ``idle`` when done (or ``error``), naming the
task. That is the shape of agents whose work outlives a request, not of AgentKit's own example
agent (work inside the request, result in the answer, reports after it and unnamed): that one is
``agentkit_agent.AgentKitAgent``. Behaviours: succeed, fail N times then succeed, hang, vanish,
explicit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .servers import ServerThread


@dataclass
class Behaviour:
    kind: str = "succeed"  # succeed | fail | hang | vanish | explicit | reject
    failures: int = 0  # for "fail": how many tasks fail before it succeeds
    work_seconds: float = 0.0
    with_task_id: bool = True
    capabilities: list[str] = field(default_factory=lambda: ["work"])
    max_concurrency: int = 1
    usage: dict[str, Any] | None = None  # reported with each result, as model-calling agents do


class FakeFleet:
    """Many fake agents behind one uvicorn server (one path per agent)."""

    def __init__(self, opscore_url: str, key: str, *, heartbeat: float | None = None) -> None:
        self.opscore_url = opscore_url
        self.key = key
        self.heartbeat = heartbeat
        self.current: dict[str, str] = {}
        self.behaviours: dict[str, Behaviour] = {}
        self.received: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []  # cancel_task messages, as received
        self.per_agent: Counter[str] = Counter()
        self.failed_so_far: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.app = self._build_app()
        self.server = ServerThread(self.app)
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._stopping = asyncio.Event()

    # --- setup ------------------------------------------------------------------------------
    def start(self) -> FakeFleet:
        self.server.start()
        if self.heartbeat:
            assert self.server.loop is not None
            asyncio.run_coroutine_threadsafe(self._beat(), self.server.loop)
        return self

    async def _beat(self) -> None:
        """Re-report each agent's current state, as agents that heartbeat do.

        A heartbeat outlives an unreachable Ops-Core (a restart, a crash): that is how a
        restarted service learns that an agent whose last report was lost is idle again.
        """
        assert self.heartbeat is not None
        while True:
            await asyncio.sleep(self.heartbeat)
            for agent_id in list(self.current):
                # read the state at send time: a snapshot could be older than a report just sent
                state = self.current.get(agent_id)
                if state is not None:  # None: the agent vanished since the loop began
                    await self._report(agent_id, state)

    def stop(self) -> None:
        if self.server.loop is not None:
            self.server.loop.call_soon_threadsafe(self._stopping.set)
        self.server.stop()

    def endpoint(self, agent_id: str) -> str:
        return f"{self.server.url}/agents/{agent_id}"

    def add(
        self, agent_id: str, behaviour: Behaviour | None = None, *, register: bool = True
    ) -> None:
        """Register the agent with Ops-Core and report it idle."""
        behaviour = behaviour or Behaviour()
        self.behaviours[agent_id] = behaviour
        if not register:
            return
        with httpx.Client(base_url=self.opscore_url, headers=self._headers(), timeout=10) as c:
            r = c.post(
                "/v1/opscore/agents",
                json={
                    "agentId": agent_id,
                    "agentName": agent_id,
                    "capabilities": behaviour.capabilities,
                    "contactEndpoint": self.endpoint(agent_id),
                    "maxConcurrency": behaviour.max_concurrency,
                },
            )
            assert r.status_code in (200, 201), r.text
            r = c.post(f"/v1/opscore/agent/{agent_id}/state", json=self._state(agent_id, "idle"))
            assert r.status_code == 202, r.text
            self.current[agent_id] = "idle"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @staticmethod
    def _state(agent_id: str, state: str, **details: Any) -> dict[str, Any]:
        return {
            "agentId": agent_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "state": state,
            "details": details,
        }

    def task_ids(self) -> Counter[str]:
        with self.lock:
            return Counter(m["opscore_task_id"] for m in self.received)

    # --- the agents' side -------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/agents/{agent_id}")
        async def probe(agent_id: str) -> JSONResponse:
            """What a probe meets: 405 from a live agent (it serves POST only, as AgentKit's
            example does); a vanished agent's socket never answers, so the probe times out."""
            if agent_id not in self.current and agent_id in self.behaviours:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(30):
                        await self._stopping.wait()
            return JSONResponse({"detail": "Method Not Allowed"}, status_code=405)

        @app.post("/agents/{agent_id}")
        async def receive(agent_id: str, request: Request) -> JSONResponse:
            message = await request.json()
            behaviour = self.behaviours.get(agent_id)
            if behaviour is None:
                return JSONResponse({"detail": "unknown agent"}, status_code=404)
            if behaviour.kind == "reject":
                return JSONResponse({"detail": "busy"}, status_code=503)
            if message.get("messageType") == "cancel_task":
                # an agent that implements cancellation: it stops and says so
                with self.lock:
                    self.cancels.append({**message, "_agent": agent_id})
                return JSONResponse({"status": "cancelled"}, status_code=200)
            with self.lock:
                self.received.append(
                    {**message, "_agent": agent_id, "_headers": dict(request.headers)}
                )
                self.per_agent[agent_id] += 1
            task = asyncio.create_task(self._work(agent_id, behaviour, message))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return JSONResponse({"status": "accepted"}, status_code=202)

        return app

    async def _report(self, agent_id: str, state: str, **details: Any) -> None:
        # what the agent is now, even if this report is lost: the heartbeat repeats it
        self.current[agent_id] = state
        if self._client is None:
            self._client = httpx.AsyncClient(
                base_url=self.opscore_url, headers=self._headers(), timeout=10
            )
        # Ops-Core unreachable (restarting): carry on, as agents do
        with contextlib.suppress(httpx.TransportError):
            await self._client.post(
                f"/v1/opscore/agent/{agent_id}/state",
                json=self._state(agent_id, state, **details),
            )

    async def _work(self, agent_id: str, b: Behaviour, message: dict[str, Any]) -> None:
        task_id = message["opscore_task_id"]
        ids = {"opscore_task_id": task_id} if b.with_task_id else {}
        if b.kind == "vanish":
            self.current.pop(agent_id, None)  # gone: no report, no heartbeat, ever again
            return
        await self._report(agent_id, "active", **ids)
        if b.kind == "hang":
            return
        if b.work_seconds:
            await asyncio.sleep(b.work_seconds)
        params = message["payload"]["parameters"]
        result = {"echo": params, "agent": agent_id, "task": message["task_name"]}
        if b.kind == "explicit":
            assert self._client is not None
            await self._client.post(
                f"/v1/opscore/tasks/{task_id}/result",
                json={"status": "completed", "result": result},
            )
            await self._report(agent_id, "idle")
            return
        if b.kind == "fail":
            with self.lock:
                fail = self.failed_so_far[agent_id] < b.failures
                if fail:
                    self.failed_so_far[agent_id] += 1
            if fail:
                await self._report(
                    agent_id, "error", error=f"boom #{self.failed_so_far[agent_id]}", **ids
                )
                await self._report(agent_id, "idle")
                return
        extra = {"usage": b.usage} if b.usage else {}
        await self._report(agent_id, "idle", result=result, **ids, **extra)


class FakeAgentKit:
    """Speaks AgentKit's ``POST /v1/agents/{agentId}/run``: 202 at once, forwards in background.

    It forwards as an AgentKit with its forwarding bug patched would. AgentKit at the supported
    commit answers the same 202 but never reaches the agent (it passes a pydantic ``HttpUrl`` to
    httpx), which is why Ops-Core dispatches straight to agents unless told otherwise; these tests
    check what Ops-Core sends to ``/run`` and that reports complete such tasks."""

    def __init__(self, fleet: FakeFleet) -> None:
        self.fleet = fleet
        self.received: list[dict[str, Any]] = []
        app = FastAPI()

        @app.post("/v1/agents/{agent_id}/run")
        async def run(agent_id: str, request: Request) -> JSONResponse:
            body = await request.json()
            if agent_id not in fleet.behaviours:
                return JSONResponse({"detail": f"Agent {agent_id} not found"}, status_code=404)
            self.received.append({"agentId": agent_id, "body": body})

            async def forward() -> None:
                async with httpx.AsyncClient(timeout=10) as c:
                    await c.post(fleet.endpoint(agent_id), json=body)

            asyncio.get_running_loop().create_task(forward())
            return JSONResponse(
                {"status": "success", "message": "Message accepted", "data": None}, status_code=202
            )

        self.server = ServerThread(app)

    def start(self) -> FakeAgentKit:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()
