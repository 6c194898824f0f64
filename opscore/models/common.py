"""Shared pieces of every schema: ids, time, pages, the error body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,200}$"  # 1-200 visible ASCII characters
Capability = Annotated[str, StringConstraints(min_length=1, max_length=100)]
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken to be UTC; aware ones are converted to it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Page(ApiModel, Generic[T]):
    """One page of a list: the items plus what is needed to fetch the next."""

    items: list[T]
    total: int
    offset: int
    limit: int


class StatusMessage(ApiModel):
    status: str = "success"
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The one error shape: ``detail`` is what FastAPI clients and AgentKit's SDK read."""

    error: ErrorBody
    detail: str
    requestId: str | None = None
