"""Agents on the wire and in the store: registration, state reports, AgentKit's webhook."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from .a2a import A2ACard
from .common import ID_PATTERN, ApiModel, Capability

# --- agents ---------------------------------------------------------------------------------


class AgentBase(ApiModel):
    agent_name: str = Field(min_length=1, max_length=200, examples=["summarizer"])
    version: str = Field("0.0.0", max_length=64, examples=["0.1.0"])
    capabilities: list[Capability] = Field(
        default_factory=list, max_length=100, examples=[["summarize"]]
    )
    contact_endpoint: str | None = Field(
        None, max_length=2048, pattern=r"^https?://", examples=["http://127.0.0.1:8101/"]
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    delivery: Literal["push", "pull", "a2a"] = Field(
        "push",
        description=(
            "push: Ops-Core POSTs each task to contactEndpoint. pull: the agent is a worker "
            "that claims its tasks (POST /v1/opscore/workers/{agentId}/claim) and needs no "
            "open port (docs/workers.md). a2a: an A2A agent, registered by its card "
            "(POST /v1/opscore/agents/a2a, docs/a2a.md)."
        ),
    )
    max_concurrency: int = Field(1, ge=1, le=1000, description="Ops-Core tasks run at once.")
    heartbeat_interval_seconds: float | None = Field(
        None,
        gt=0,
        le=86400,
        description=(
            "How often the agent promises to report or call .../heartbeat. Such an agent is "
            "offline after OPSCORE_HEARTBEAT_MISSES intervals of silence; an agent that declares "
            "none is probed at its contactEndpoint instead (docs/liveness.md)."
        ),
        examples=[30],
    )

    @field_validator("capabilities")
    @classmethod
    def _check_capabilities(cls, value: list[str]) -> list[str]:
        for cap in value:
            if not cap or len(cap) > 100:
                raise ValueError("each capability must be 1-100 characters")
        return list(dict.fromkeys(value))

    @field_validator("contact_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("contactEndpoint must be an http:// or https:// URL")
        return value


class AgentCreate(AgentBase):
    """A registration by an operator or the SDK; agentId is generated when omitted."""

    agent_id: str | None = Field(None, pattern=ID_PATTERN, examples=["summarizer-1"])

    @field_validator("delivery")
    @classmethod
    def _not_a2a(cls, value: str) -> str:
        if value == "a2a":
            raise ValueError("A2A agents are registered by their card: POST /v1/opscore/agents/a2a")
        return value


class Agent(AgentBase):
    agent_id: str
    state: str | None = Field(None, description="Last reported state; null until the first report.")
    state_timestamp: datetime | None = None
    state_details: dict[str, Any] = Field(default_factory=dict)
    last_seen: datetime
    registered_at: datetime
    updated_at: datetime
    source: Literal["api", "webhook"] = "api"
    active_tasks: list[str] = Field(default_factory=list, description="Ops-Core tasks in flight.")
    last_probe_at: datetime | None = Field(
        None, description="When Ops-Core last probed the agent's contactEndpoint."
    )
    probe_failures: int = Field(0, description="Probes in a row that got no HTTP answer.")
    lost_tasks: list[str] = Field(
        default_factory=list,
        description="Tasks re-queued when the agent went offline; a late result still counts.",
    )
    offline_since: datetime | None = Field(
        None, description="When the agent went offline (by its report or by liveness)."
    )
    a2a: A2ACard | None = Field(
        None, alias="a2a", description="A2A agents: their card and interface."
    )
    names_tasks: bool = Field(
        False,
        description="Whether the agent's reports name the task they are about "
        "(details.opscore_task_id): learnt from its first such report. Such reports decide "
        "on their own, so a hand-over's acknowledgement (202) needs no write.",
    )


# --- state ----------------------------------------------------------------------------------


class StateReport(BaseModel):
    """Exactly what AgentKit's SDK sends (``report_state_to_opscore``)."""

    agentId: str = Field(max_length=128, examples=["3f2b9c1e-7a44-4d0e-9a51-2f6f0c8d1e77"])
    timestamp: datetime = Field(examples=["2026-11-24T10:15:30.123456+00:00"])
    state: str = Field(min_length=1, max_length=64, examples=["active"])
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("details", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class StateRecord(ApiModel):
    agent_id: str
    state: str
    timestamp: datetime
    details: dict[str, Any] = Field(default_factory=dict)
    received_at: datetime
    reason: str | None = Field(None, description="Set when Ops-Core itself changed the state.")


class CurrentState(ApiModel):
    """An agent's last state; every field but agentId is null until its first report."""

    agent_id: str
    state: str | None = None
    timestamp: datetime | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    received_at: datetime | None = None


class HeartbeatAccepted(ApiModel):
    status: Literal["success"] = "success"
    agent_id: str
    state: str | None
    last_seen: datetime


class StateAccepted(ApiModel):
    status: Literal["success", "pending"] = Field(
        "success",
        description=(
            "success: applied. pending: the agent is not registered yet; the report is kept "
            "(OPSCORE_PENDING_REPORT_TTL) and applied when its registration arrives."
        ),
    )
    message: str
    agent_id: str
    state: str
    timestamp: datetime
    duplicate: bool = False


# --- webhook --------------------------------------------------------------------------------


class WebhookAgentDetails(BaseModel):
    agentId: str = Field(pattern=ID_PATTERN)
    agentName: str = Field("", max_length=200)
    version: str = Field("0.0.0", max_length=64)
    capabilities: list[Capability] = Field(default_factory=list, max_length=100)
    contactEndpoint: str | None = Field(None, max_length=2048, pattern=r"^https?://")
    metadata: dict[str, Any] = Field(default_factory=dict)


class WebhookEvent(BaseModel):
    event_type: Literal["REGISTER", "DEREGISTER"]
    agent_details: WebhookAgentDetails
