"""Events out: subscriptions (a URL and the events wanted), the events, and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AnyHttpUrl, ConfigDict, Field

from .common import ApiModel

EventType = Literal[
    "run.completed",
    "run.failed",
    "run.cancelled",
    "task.dead_lettered",
    "approval.needed",
    "agent.offline",
    "agent.back",
    "budget.exceeded",
]
EVENT_TYPES: tuple[str, ...] = EventType.__args__  # type: ignore[attr-defined]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class SubscriptionCreate(ApiModel):
    """Where to send which events."""

    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl = Field(examples=["https://hooks.example.com/opscore"])
    events: list[EventType] = Field(
        min_length=1, max_length=len(EVENT_TYPES), examples=[["run.completed", "run.failed"]]
    )
    description: str = Field("", max_length=500, examples=["On-call channel"])
    secret: str | None = Field(
        None,
        min_length=16,
        max_length=200,
        description="Signs every delivery; one is generated when omitted (shown once).",
    )


class SubscriptionUpdate(ApiModel):
    model_config = ConfigDict(extra="forbid")

    url: AnyHttpUrl | None = None
    events: list[EventType] | None = Field(None, min_length=1, max_length=len(EVENT_TYPES))
    description: str | None = Field(None, max_length=500)
    active: bool | None = Field(None, description="false: events are not sent (not kept).")


class Subscription(ApiModel):
    subscription_id: str
    url: str
    events: list[EventType]
    description: str = ""
    active: bool = True
    secret_hint: str = Field(description="The secret's last four characters.")
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(Subscription):
    secret: str = Field(description="Shown once: verify each delivery's signature with it.")


class StoredSubscription(Subscription):
    """What the store keeps: the secret is needed to sign."""

    secret: str


class Event(ApiModel):
    """The body of every delivery."""

    event_id: str
    type: EventType | Literal["ping"]
    occurred_at: datetime
    data: dict[str, Any] = Field(default_factory=dict)


class Delivery(ApiModel):
    """One event sent to one subscription, with its attempts."""

    delivery_id: str
    subscription_id: str
    event: Event
    status: DeliveryStatus = "pending"
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    created_at: datetime
    delivered_at: datetime | None = None
