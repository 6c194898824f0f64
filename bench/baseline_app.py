"""The bare-FastAPI baseline for state ingest: the same pydantic body model as Ops-Core's state
route, no auth, no logging, no store. What the framework alone costs on this machine."""

from __future__ import annotations

from fastapi import FastAPI, status

from opscore.models import StateReport

app = FastAPI()


@app.post("/v1/opscore/agent/{agent_id}/state", status_code=status.HTTP_202_ACCEPTED)
async def report_state(agent_id: str, body: StateReport) -> dict[str, str]:
    return {"status": "success", "message": "State update accepted", "agentId": body.agentId}
