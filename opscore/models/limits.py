"""Concurrency limits on capabilities (limits on a workflow's runs are in its template)."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from .common import ApiModel


class CapabilityLimit(ApiModel):
    """At most ``maxRunning`` tasks of a capability dispatched or running at once."""

    capability: str
    max_running: int = Field(ge=1, le=1_000_000)
    running: int | None = Field(None, description="Tasks holding a slot now (when read).")


class LimitUpdate(ApiModel):
    model_config = ConfigDict(extra="forbid")

    max_running: int = Field(ge=1, le=1_000_000, examples=[4])
