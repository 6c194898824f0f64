"""Helpers for workflow tests: templates, triggers, waiting for sessions to settle."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx

from .servers import wait_for

TERMINAL = {"completed", "failed", "cancelled"}


def task(task_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "taskId": task_id,
        "name": task_id,
        "agentCapability": "work",
        "parameters": {},
        **fields,
    }


def template(workflow_id: str, *tasks: dict[str, Any], version: str = "1.0") -> dict[str, Any]:
    return {
        "id": workflow_id,
        "name": workflow_id,
        "description": "",
        "version": version,
        "tasks": list(tasks),
    }


def create(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/opscore/workflows", json=body)
    assert response.status_code in (200, 201), response.text
    return response.json()


def run(client: httpx.Client, workflow_id: str, payload: dict | None = None, **extra: Any) -> str:
    response = client.post(
        f"/v1/opscore/workflows/{workflow_id}/runs", json={"initialPayload": payload or {}, **extra}
    )
    assert response.status_code == 202, response.text
    return response.json()["sessionId"]


def settle(client: httpx.Client, session_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until the session reaches a terminal status; return its detail."""

    def done() -> dict[str, Any] | None:
        detail = client.get(f"/v1/opscore/sessions/{session_id}").json()
        return detail if detail["status"] in TERMINAL else None

    return wait_for(done, timeout=timeout, interval=0.05)


def by_step(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["stepId"]: t for t in detail["tasks"]}


def run_counted(
    client: httpx.Client, calls: Counter[str], workflow_id: str, payload: dict
) -> tuple[dict[str, dict[str, Any]], Counter[str]]:
    """Run ``workflow_id`` to completion; its tasks by step, and the store calls it made
    (``calls``: a counter kept by ``tests/counted_store.counted``)."""
    before = Counter(calls)
    detail = settle(client, run(client, workflow_id, payload))
    assert detail["status"] == "completed", detail
    return by_step(detail), calls - before
