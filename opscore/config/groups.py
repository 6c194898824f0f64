"""Groups of ``Settings`` fields, split out for size; the environment prefix and .env
handling come from ``Settings`` (``config/__init__.py``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class _LivenessAndRetention(BaseSettings):
    """Liveness, clock skew and retention: a group of ``Settings`` (split for size; the
    environment prefix and .env handling come from ``Settings``)."""

    agent_offline_after: float = Field(
        60.0,
        gt=0,
        le=86400,
        description=(
            "Seconds of silence before Ops-Core checks an agent that declared no heartbeat: it "
            "probes its contactEndpoint (an agent with no endpoint either is marked offline)."
        ),
    )
    max_clock_skew_seconds: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="How far in the future a state report's timestamp may be (else 422).",
    )
    retention_seconds: float = Field(
        604_800.0,
        ge=0,
        le=315_360_000,
        description="Finished sessions older than this are removed (0: keep them by count only).",
    )
    retention_interval: float = Field(
        300.0, gt=0, le=86400, description="Seconds between retention sweeps."
    )
    heartbeat_misses: int = Field(
        3, ge=1, le=100, description="Declared heartbeat intervals of silence before offline."
    )
    probe_interval: float = Field(
        60.0, gt=0, le=86400, description="Seconds between probes of one silent agent."
    )
    probe_timeout: float = Field(
        5.0, gt=0, le=120, description="Seconds a probe waits for any HTTP answer."
    )
    probe_misses: int = Field(
        3, ge=1, le=100, description="Probes in a row without an answer before an agent is offline."
    )
    probe_concurrency: int = Field(
        32, ge=1, le=10_000, description="Probes in flight at once, across all agents."
    )
    probe_jitter: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Spread of each agent's probe time, as a share of the interval.",
    )
    liveness_interval: float = Field(
        5.0, gt=0, le=3600, description="Seconds between liveness sweeps (heartbeats and probes)."
    )
    max_lost_attempts: int = Field(
        5,
        ge=0,
        le=1000,
        description=(
            "Attempts a task may lose to an agent going offline without being charged; past it, "
            "a lost attempt counts as failed, so no task loops for ever."
        ),
    )
    pending_report_ttl: float = Field(
        300.0,
        gt=0,
        le=86400,
        description="Seconds a state report for a not-yet-registered agent waits for its registration.",
    )
    pending_reports_max: int = Field(
        10_000, ge=0, le=1_000_000, description="Agents with a report waiting for registration."
    )


class _AgentsBeyondPush(BaseSettings):
    """Pull workers and A2A agents: agents Ops-Core does not simply POST tasks to."""

    worker_lease_seconds: float = Field(
        30.0,
        ge=1,
        le=3600,
        description=(
            "How long a pull worker holds a task without a heartbeat; then the task is queued "
            "again (not charged as an attempt)."
        ),
    )
    public_url: str | None = Field(
        None,
        description=(
            "Where agents reach this Ops-Core (e.g. https://opscore.example.com): A2A agents "
            "send their push notifications there. Unset: A2A tasks are followed by polling."
        ),
    )
    a2a_poll_seconds: float = Field(
        2.0,
        ge=0.1,
        le=3600,
        description="How often an A2A task is asked about (GetTask) when no push can come.",
    )
    a2a_push_poll_seconds: float = Field(
        30.0,
        ge=0.1,
        le=3600,
        description=(
            "How often an A2A task that pushes its updates is asked about anyway, in case a "
            "notification was lost."
        ),
    )
