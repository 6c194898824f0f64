"""Every route described once as a ``_Call`` (what to send, how to read the answer), for the
sync and the async client alike."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import httpx
from pydantic import BaseModel, TypeAdapter

T = TypeVar("T")


@dataclass
class _Call(Generic[T]):
    """One API call: what to send and how to read the answer."""

    method: str
    path: str
    result: Any = None  # a model/type to validate into, or None for raw JSON
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None  # instead of the client's (a long-poll waits longer)

    def parse(self, response: httpx.Response) -> T:
        """The answer as the call's result type (None for an empty answer, as 204 has)."""
        if response.status_code == 204 or not response.content:
            return cast(T, None)
        data = response.json()
        if self.result is None:
            return data
        return _adapter(self.result).validate_python(data)


@functools.cache
def _adapter(result_type: Any) -> TypeAdapter[Any]:
    return TypeAdapter(result_type)


def _clean(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _dump(model: Any) -> Any:
    if isinstance(model, BaseModel):
        return model.model_dump(mode="json", by_alias=True, exclude_none=True)
    return model


class _Sender:
    """What the route descriptions need of a client: ``_call`` sends a call (sync) or returns
    a coroutine (async)."""

    def _call(self, call: _Call[Any]) -> Any:  # pragma: no cover - implemented by the clients
        raise NotImplementedError
