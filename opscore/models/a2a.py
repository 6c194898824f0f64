"""A2A agents (the Agent2Agent protocol, 1.0): what Ops-Core keeps of an agent's card, what it
keeps of the remote task an attempt became, and the registration by card URL.

The card itself is the agent's; Ops-Core stores it as served so a client can be rebuilt from it
on any replica without fetching it again (docs/a2a.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, field_validator

from .common import ID_PATTERN, ApiModel, Capability

# the A2A task states (``TaskState`` without its ``TASK_STATE_`` prefix, lower case)
A2A_TERMINAL = frozenset({"completed", "failed", "canceled", "rejected"})
A2A_INTERRUPTED = frozenset({"input_required", "auth_required"})


class A2ACard(ApiModel):
    """An A2A agent as its card describes it, and the interface Ops-Core talks to."""

    card_url: str = Field(
        description="Where the card was read.",
        examples=["http://10.0.0.9:41241/.well-known/agent-card.json"],
    )
    name: str = Field("", examples=["Sample Agent"])
    description: str = ""
    url: str = Field(
        description="The interface Ops-Core sends to (JSON-RPC or HTTP+JSON).",
        examples=["http://10.0.0.9:41241/a2a/jsonrpc"],
    )
    protocol_binding: str = Field(examples=["JSONRPC"])
    protocol_version: str = Field(examples=["1.0"])
    push_notifications: bool = Field(
        False,
        description=(
            "The card says the agent sends push notifications; Ops-Core then asks for them "
            "(when OPSCORE_PUBLIC_URL is set) and polls GetTask less often."
        ),
    )
    skills: list[str] = Field(default_factory=list, description="The card's skill ids.")
    card: dict[str, Any] = Field(
        default_factory=dict, description="The agent card as the agent served it."
    )


class A2ARegistration(ApiModel):
    """Register an A2A agent by the URL of its agent card; its skills become capabilities."""

    model_config = ConfigDict(extra="forbid")

    card_url: str = Field(
        max_length=2048,
        pattern=r"^https?://",
        description=(
            "The agent card, or the agent's base URL (then /.well-known/agent-card.json is read)."
        ),
        examples=["http://10.0.0.9:41241/.well-known/agent-card.json"],
    )
    agent_id: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="Ops-Core's id for the agent; by default derived from the card's name.",
        examples=["hello-a2a"],
    )
    capabilities: list[Capability] = Field(
        default_factory=list,
        max_length=100,
        description="Capabilities besides the card's skill ids.",
        examples=[["greet"]],
    )
    max_concurrency: int = Field(4, ge=1, le=1000, description="Ops-Core tasks run at once.")
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("capabilities")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("card_url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if not parts.hostname:
            raise ValueError("cardUrl needs a host")
        _ = parts.port  # raises ValueError for a port out of range
        return value


class A2ATaskRef(ApiModel):
    """The remote A2A task an attempt became: what to ask (GetTask) or cancel (CancelTask)."""

    task_id: str = Field(description="The agent's task id.")
    context_id: str = ""
    state: str = Field(
        "submitted", description="The last A2A state seen (completed, working, input_required...)."
    )
    message: str | None = Field(None, description="The text of the agent's last status message.")
    pushed: bool = Field(False, description="Push notifications were asked for.")
    checked_at: datetime | None = Field(None, description="When Ops-Core last heard of it.")
    next_check_at: datetime | None = Field(
        None, description="When Ops-Core asks after it next (GetTask), unless news comes first."
    )


class A2ANotificationAccepted(ApiModel):
    """What Ops-Core did with a push notification."""

    status: str = Field(examples=["applied"], description="applied, or ignored (with why).")
    task_id: str
    state: str | None = None
    reason: str | None = None
