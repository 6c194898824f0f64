"""Schedules: a template run on a cron expression or a fixed interval."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from .common import ID_PATTERN, ApiModel

Overlap = Literal["skip", "queue_one", "allow"]
CatchUp = Literal["skip", "one", "all"]


class ScheduleFields(ApiModel):
    """What a schedule's owner sets (all optional: also the body of an update)."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = Field(
        None,
        max_length=200,
        description="Five fields (minute hour day month weekday) or @hourly/@daily/@weekly/...",
        examples=["0 9 * * mon-fri"],
    )
    interval_seconds: float | None = Field(
        None, ge=1, le=31_536_000, description="Or a fixed interval instead of cron."
    )
    timezone: str | None = Field(
        None,
        max_length=64,
        description="IANA zone the cron reads in (default UTC).",
        examples=["Europe/Paris"],
    )
    payload: dict[str, Any] | None = Field(None, description="Each run's initialPayload.")
    metadata: dict[str, Any] | None = None
    version: str | None = Field(
        None, max_length=64, description="Template version to run; default: the newest."
    )
    overlap: Overlap | None = Field(
        None,
        description=(
            "While the previous run still runs: skip the tick (default), queue_one (run once "
            "it ends; further ticks skip), or allow (run anyway)."
        ),
    )
    catch_up: CatchUp | None = Field(
        None,
        description=(
            "Ticks missed while Ops-Core was down: one (run once for them, default), skip "
            "(none), all (each, at most 100)."
        ),
    )
    paused: bool | None = None


class ScheduleCreate(ScheduleFields):
    workflow_id: str = Field(pattern=ID_PATTERN, examples=["digest"])
    schedule_id: str | None = Field(
        None, pattern=ID_PATTERN, description="Generated when omitted.", examples=["digest-daily"]
    )


class Schedule(ApiModel):
    schedule_id: str
    workflow_id: str
    version: str | None = None
    cron: str | None = None
    interval_seconds: float | None = None
    timezone: str = "UTC"
    description: str = Field("", description="The cron expression in words.")
    payload: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    overlap: Overlap = "skip"
    catch_up: CatchUp = "one"
    paused: bool = False
    next_fire_at: datetime | None = None
    queued_tick: datetime | None = Field(
        None, description="A tick held back (overlap queue_one) until the running run ends."
    )
    last_fired_at: datetime | None = None
    last_tick: datetime | None = Field(None, description="The tick of the last run started.")
    last_session_id: str | None = None
    last_error: str | None = Field(None, description="Why the last tick could not start a run.")
    fired: int = 0
    skipped: int = Field(0, description="Ticks not run (overlap, catch-up, errors).")
    created_at: datetime
    updated_at: datetime
