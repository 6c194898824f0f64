"""Pull workers on the wire: a claim, the tasks it hands out with their leases, a result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from .common import ApiModel


class WorkerClaim(ApiModel):
    """A pull worker asks for work, waiting up to ``waitSeconds`` for some."""

    model_config = ConfigDict(extra="forbid")

    wait_seconds: float = Field(20, ge=0, le=60, description="Long-poll: how long to wait.")
    max_tasks: int = Field(1, ge=1, le=100, description="At most this many tasks at once.")


class WorkerTask(ApiModel):
    """A task a worker claimed: the same message a push agent gets, and its lease."""

    task_id: str
    session_id: str
    task_name: str
    capability: str | None = None
    attempt: int
    message: dict[str, Any] = Field(description="The workflow_task message, as pushed to agents.")
    lease_seconds: float
    lease_until: datetime


class WorkerClaimed(ApiModel):
    tasks: list[WorkerTask] = Field(default_factory=list)


class LeaseRenewed(ApiModel):
    task_id: str
    lease_until: datetime


class WorkerResult(ApiModel):
    model_config = ConfigDict(extra="forbid")

    result: Any = None
    error: str | None = Field(None, max_length=4000)
    usage: dict[str, Any] | None = Field(
        None, description="Tokens and model: {inputTokens, outputTokens, model}."
    )
