"""An agent that behaves exactly as AgentKit's own example agent does, with AgentKit's server
around it (``../shared/contracts/agentkit_example_agent.md``), served for real by uvicorn.

- Start-up: it reports ``idle`` to Ops-Core with AgentKit's SDK, and AgentKit's signed REGISTER
  webhook reaches Ops-Core a few tens of milliseconds *later*. A report that fails is not
  retried. It never sends a heartbeat.
- A message is worked on *inside* the HTTP handler; the answer is ``200 {"status":
  "completed", "result": ...}``, ``200 {"status": "ignored", ...}`` for a message type it does
  not handle, or ``500 {"detail": {"error_code": "PROCESSING_ERROR", "message": ...}}``.
- Its state reports are background tasks sent after the answer: ``active``, then ``idle`` on
  success or ``error`` (details: the error dict) on failure. They carry no task id and no
  result. After an error it stays in ``error`` until its next success.
- ``answer_first=True`` is the other common shape (answer 202 at once, work in the
  background, report ``idle`` with ``opscore_task_id`` and ``result``), for liveness tests.
- Each agent has its own server, so ``kill()`` makes it really unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse

from .servers import ServerThread


class AgentKitAgent:
    def __init__(
        self,
        opscore_url: str,
        key: str,
        *,
        agent_id: str,
        capabilities: list[str],
        webhook_secret: str,
        work_seconds: float = 0.0,
        fail_first: int = 0,
        answer_first: bool = False,
        webhook_delay: float = 0.03,
    ) -> None:
        self.opscore_url = opscore_url
        self.key = key
        self.agent_id = agent_id
        self.capabilities = capabilities
        self.webhook_secret = webhook_secret
        self.work_seconds = work_seconds
        self.fail_first = fail_first
        self.answer_first = answer_first
        self.webhook_delay = webhook_delay
        self.received: list[dict[str, Any]] = []  # every POST, probes excluded (they are GETs)
        self.failures = 0
        self.lock = threading.Lock()
        self.server = ServerThread(self._build_app())
        self._work: set[asyncio.Task[None]] = set()

    # --- start-up, as AgentKit's server and the example agent do it ------------------------
    def start(self) -> AgentKitAgent:
        self.server.start()
        self._report_sync("idle")  # before AgentKit's webhook: Ops-Core does not know it yet
        time.sleep(self.webhook_delay)
        self._send_webhook()
        return self

    @property
    def endpoint(self) -> str:
        return self.server.url + "/"

    def kill(self) -> None:
        """The agent's process dies: its port refuses connections from now on."""
        self.server.stop()

    def task_ids(self) -> list[str]:
        with self.lock:
            return [m["opscore_task_id"] for m in self.received if "opscore_task_id" in m]

    def _send_webhook(self) -> None:
        body = json.dumps(
            {
                "event_type": "REGISTER",
                "agent_details": {
                    "agentId": self.agent_id,
                    "agentName": self.agent_id,
                    "version": "1.0.0",
                    "capabilities": self.capabilities,
                    "contactEndpoint": self.endpoint,
                    "metadata": {},
                },
            },
            separators=(",", ":"),
        ).encode()
        stamp = str(int(time.time()))
        signature = hmac.new(
            self.webhook_secret.encode(), stamp.encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-AgentKit-Timestamp": stamp,
            "X-AgentKit-Signature": signature,
        }
        # AgentKit sends it once, in the background, and never retries
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                self.opscore_url + "/v1/opscore/internal/agent/notify",
                content=body,
                headers=headers,
                timeout=10,
            )

    # --- AgentKit's SDK: report_state_to_opscore -------------------------------------------
    def _state_body(self, state: str, details: dict[str, Any]) -> dict[str, Any]:
        return {
            "agentId": self.agent_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "state": state,
            "details": details,
        }

    def _report_sync(self, state: str, **details: Any) -> None:
        with contextlib.suppress(httpx.HTTPError):  # logged and dropped by the SDK
            httpx.post(
                f"{self.opscore_url}/v1/opscore/agent/{self.agent_id}/state",
                json=self._state_body(state, details),
                headers={"Authorization": f"Bearer {self.key}"},
                timeout=10,
            )

    async def _report(self, state: str, **details: Any) -> None:
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=10) as client:
                await client.post(
                    f"{self.opscore_url}/v1/opscore/agent/{self.agent_id}/state",
                    json=self._state_body(state, details),
                    headers={"Authorization": f"Bearer {self.key}"},
                )

    # --- the agent's one route ---------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/")
        async def handle(request: Request, background: BackgroundTasks) -> JSONResponse:
            message = await request.json()
            with self.lock:
                self.received.append(message)
            if message.get("messageType") != "workflow_task":
                # as AgentKit's example does: "active" for any message, "idle" after ignoring
                # it, both without opscore_task_id, after the answer
                background.add_task(self._report, "active")
                background.add_task(self._report, "idle")
                return JSONResponse(
                    {"status": "ignored", "reason": "unsupported message type"}, status_code=200
                )
            if self.answer_first:
                work = asyncio.create_task(self._work_in_background(message))
                self._work.add(work)
                work.add_done_callback(self._work.discard)
                return JSONResponse({"status": "accepted"}, status_code=202)
            await asyncio.sleep(self.work_seconds)  # the LLM call, inside the handler
            with self.lock:
                fail = self.failures < self.fail_first
                if fail:
                    self.failures += 1
            if fail:
                error = {"error_code": "PROCESSING_ERROR", "message": f"boom #{self.failures}"}
                background.add_task(self._report, "active")
                background.add_task(self._report, "error", **error)
                return JSONResponse({"detail": error}, status_code=500)
            background.add_task(self._report, "active")
            background.add_task(self._report, "idle")
            return JSONResponse({"status": "completed", "result": _result(message)})

        return app

    async def _work_in_background(self, message: dict[str, Any]) -> None:
        task_id = message["opscore_task_id"]
        await self._report("active", opscore_task_id=task_id)
        await asyncio.sleep(self.work_seconds)
        await self._report("idle", opscore_task_id=task_id, result=_result(message))


def _result(message: dict[str, Any]) -> str:
    """A result that shows what the agent was given, so a chain of steps can be traced."""
    payload = message.get("payload", {})
    parameters = payload.get("parameters", {})
    text = parameters.get("text", "")
    return f"{payload.get('task_name')}({text})"
