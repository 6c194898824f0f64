"""What the operator console asks besides the resources: who the caller is, and the last hour."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from .common import ApiModel


class Caller(ApiModel):
    """The key's name and role and what the role may do; never the key itself."""

    name: str = Field(examples=["ops-team"])
    role: str = Field(examples=["operator"])
    scopes: list[str] = Field(examples=[["read", "runs:write", "approvals:write"]])
    version: str = Field(description="Ops-Core's version.", examples=["0.1.0"])


class ActivityMinute(ApiModel):
    """One minute of this replica's activity."""

    at: datetime = Field(description="The minute's start.")
    completed: int = Field(description="Tasks completed.")
    failed: int = Field(description="Attempts failed (retried or not).")
    runs_completed: int
    runs_failed: int
    runs_cancelled: int
    queue_depth: int | None = Field(
        None, description="The most tasks seen waiting in the queue that minute (the store's)."
    )


class Activity(ApiModel):
    minutes: list[ActivityMinute]
