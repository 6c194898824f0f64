"""A minimal AgentKit-compatible agent that Ops-Core can dispatch work to.

It receives AgentKit ``workflow_task`` messages on ``POST /`` and, by default, behaves like
AgentKit's own example agent (``examples/opscore_aware_agent.py`` in AgentKit): it does the
work inside the request and answers ``{"status": "completed", "result": ...}`` (or ``500
{"detail": {"error_code": "PROCESSING_ERROR", ...}}``), then reports ``active`` and ``idle`` (or
``error``) after the answer. It sends no heartbeat: Ops-Core probes it when it is quiet.

With ``--background`` it answers 202 at once instead, works in the background, and reports
``active`` and then ``idle`` with ``opscore_task_id`` and the result, as agents do whose work
outlives a request.

    python examples/agent.py --id fetcher-1 --capability fetch --port 8101

Environment: OPSCORE_API_URL (default http://127.0.0.1:8000) and OPSCORE_API_KEY.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import uvicorn
from fastapi import BackgroundTasks, FastAPI, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("example-agent")


def make_agent(
    agent_id: str,
    capabilities: list[str],
    port: int,
    *,
    opscore_url: str,
    api_key: str,
    fail_rate: float = 0.0,
    work_seconds: float = 0.2,
    background: bool = False,
) -> FastAPI:
    headers = {"Authorization": f"Bearer {api_key}"}
    http = httpx.AsyncClient(base_url=opscore_url, headers=headers, timeout=10)
    running: set[asyncio.Task[None]] = set()

    async def report(state: str, **details: Any) -> None:
        """What AgentKit's SDK ``report_state_to_opscore`` sends."""
        body = {
            "agentId": agent_id,
            "timestamp": datetime.now(UTC).isoformat(),
            "state": state,
            "details": details,
        }
        response = await http.post(f"/v1/opscore/agent/{agent_id}/state", json=body)
        if response.is_error:
            log.warning("state report refused: %s", response.json().get("detail"))

    def result_of(message: dict[str, Any]) -> dict[str, Any]:
        return {
            "agent": agent_id,
            "task": message.get("task_name"),
            "input": message.get("payload", {}).get("parameters", {}),
            "text": f"{message.get('task_name')} done by {agent_id}",
        }

    async def work_in_background(message: dict[str, Any]) -> None:
        task_id = message.get("opscore_task_id")
        await report("active", opscore_task_id=task_id)
        await asyncio.sleep(work_seconds)
        if random.random() < fail_rate:
            await report("error", opscore_task_id=task_id, error="simulated failure")
            return
        await report("idle", opscore_task_id=task_id, result=result_of(message))

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
        registration = {
            "agentId": agent_id,
            "agentName": agent_id,
            "capabilities": capabilities,
            "contactEndpoint": f"http://127.0.0.1:{port}/",
        }
        response = await http.post("/v1/opscore/agents", json=registration)
        if response.status_code not in (200, 201, 409):
            raise RuntimeError(f"registration failed: {response.text}")
        await report("initializing")
        await report("idle")
        yield
        await report("offline")
        await http.aclose()

    app = FastAPI(title=f"example agent {agent_id}", lifespan=lifespan)

    @app.post("/")
    async def receive(request: Request, tasks: BackgroundTasks) -> JSONResponse:
        message = await request.json()
        if message.get("messageType") != "workflow_task":
            reason = f"Unhandled message type: {message.get('messageType')}"
            return JSONResponse({"status": "ignored", "reason": reason})
        if background:
            task = asyncio.create_task(work_in_background(message))
            running.add(task)
            task.add_done_callback(running.discard)
            return JSONResponse({"status": "accepted"}, status_code=202)
        # AgentKit's way: the work happens inside the request; the reports follow the answer
        tasks.add_task(report, "active")
        await asyncio.sleep(work_seconds)
        if random.random() < fail_rate:
            error = {"error_code": "PROCESSING_ERROR", "message": "simulated failure"}
            tasks.add_task(report, "error", **error)
            return JSONResponse({"detail": error}, status_code=500)
        tasks.add_task(report, "idle")
        return JSONResponse({"status": "completed", "result": result_of(message)})

    return app


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--id", required=True, help="agent id")
    parser.add_argument("--capability", action="append", default=[], help="repeat for more")
    parser.add_argument("--port", type=int, default=8101)
    parser.add_argument("--fail-rate", type=float, default=0.0, help="0..1 chance a task fails")
    parser.add_argument("--work-seconds", type=float, default=0.2)
    parser.add_argument(
        "--background",
        action="store_true",
        help="answer 202 at once and report the result (default: answer with it, as AgentKit's "
        "example agent does)",
    )
    args = parser.parse_args()
    api_key = os.environ.get("OPSCORE_API_KEY")
    if not api_key:
        raise SystemExit("Set OPSCORE_API_KEY to the key Ops-Core printed")
    logging.basicConfig(level=logging.INFO)
    app = make_agent(
        args.id,
        args.capability or ["work"],
        args.port,
        opscore_url=os.environ.get("OPSCORE_API_URL", "http://127.0.0.1:8000"),
        api_key=api_key,
        fail_rate=args.fail_rate,
        work_seconds=args.work_seconds,
        background=args.background,
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
