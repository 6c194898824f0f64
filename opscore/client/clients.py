"""The two clients: ``OpsCoreClient`` sends each call and waits, ``AsyncOpsCoreClient`` awaits
it; both retry connection failures and 503 a bounded number of times."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

import httpx

from .. import __version__
from ..models import SessionDetail
from .calls import _Call
from .errors import APIConnectionError, APIError, APITimeoutError, _error_from
from .fleet import _FleetEndpoints
from .operations import _log_params, _OperationsEndpoints
from .runs import _RunEndpoints

DEFAULT_URL = "http://127.0.0.1:8000"
TERMINAL_SESSION = frozenset({"completed", "failed", "cancelled"})
T = TypeVar("T")


class _Endpoints(_FleetEndpoints, _RunEndpoints, _OperationsEndpoints):
    """Every Ops-Core route, described once. ``_call`` sends (sync) or returns a coroutine."""


def _sse_records(lines: list[str]) -> dict[str, Any] | None:
    data = [line[5:].lstrip() for line in lines if line.startswith("data:")]
    if not data:
        return None
    return json.loads("\n".join(data))


class _BaseClient(_Endpoints):
    """Configuration, headers, retry policy: everything but the sending."""

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        *,
        timeout: float,
        max_retries: int,
    ) -> None:
        self.base_url = (base_url or os.environ.get("OPSCORE_API_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("OPSCORE_API_KEY")
        if not key:
            raise APIError(
                "No API key: pass api_key=... or set the OPSCORE_API_KEY environment variable"
            )
        self.api_key = key
        self.timeout = timeout
        self.max_retries = max_retries

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.api_key}",
            "User-Agent": f"opscore-python/{__version__}",
            "Accept": "application/json",
        }

    def _request(self, call: _Call[Any]) -> httpx.Request:
        return httpx.Request(
            call.method,
            self.base_url + call.path,
            params=call.params or None,
            json=call.json if call.content is None else None,
            content=call.content,
            headers={**self._headers(), **call.headers},
            extensions={"timeout": httpx.Timeout(call.timeout).as_dict()} if call.timeout else None,
        )

    def _retry_delay(self, attempt: int) -> float:
        return min(0.25 * (2**attempt), 4.0) * (0.75 + random.random() / 2)

    def _should_retry(self, attempt: int, response: httpx.Response | None) -> bool:
        """Retry only connection failures and 503, a bounded number of times."""
        if attempt >= self.max_retries:
            return False
        return response is None or response.status_code == 503

    def _wrap(self, exc: httpx.TransportError) -> APIConnectionError:
        """A transport failure, naming the URL it was trying (a wrong OPSCORE_API_URL is the
        usual cause)."""
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(f"Request to Ops-Core at {self.base_url} timed out: {exc}")
        return APIConnectionError(f"Cannot reach Ops-Core at {self.base_url}: {exc}")


class OpsCoreClient(_BaseClient):
    """Synchronous client. Use as a context manager, or call ``close()``."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        http_client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, max_retries=max_retries)
        self._http = http_client or httpx.Client(timeout=timeout)

    def _call(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = self._http.send(self._request(call))
            except httpx.TransportError as exc:
                if not self._should_retry(attempt, None):
                    raise self._wrap(exc) from exc
            if response is not None and not self._should_retry(attempt, response):
                if response.is_error:
                    raise _error_from(response)
                return call.parse(response)
            time.sleep(self._retry_delay(attempt))
            attempt += 1

    def wait_for_session(
        self,
        session_id: str,
        *,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
        on_update: Callable[[SessionDetail], None] | None = None,
    ) -> SessionDetail:
        """Poll until the session is completed, failed or cancelled; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            session = self.get_session(session_id)
            if on_update is not None:
                on_update(session)
            if session.status in TERMINAL_SESSION:
                return session
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Session {session_id} still {session.status} after {timeout}s")
            time.sleep(poll_interval)

    def stream_logs(
        self, *, last_event_id: int | None = None, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Follow the live log stream (SSE); yields records until the caller stops."""
        params = _log_params(**{k: filters.get(k) for k in _LOG_FILTERS})
        headers = {**self._headers(), "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = httpx.Timeout(self.timeout, read=None)
        with self._http.stream(
            "GET",
            self.base_url + "/v1/opscore/logs/stream",
            params=params,
            headers=headers,
            timeout=timeout,
        ) as response:
            if response.is_error:
                response.read()
                raise _error_from(response)
            lines: list[str] = []
            for line in response.iter_lines():
                if line:
                    lines.append(line)
                    continue
                record = _sse_records(lines)
                lines = []
                if record is not None:
                    yield record

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpsCoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncOpsCoreClient(_BaseClient):
    """Asynchronous client with the same methods as ``OpsCoreClient``; await them."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout, max_retries=max_retries)
        self._http = http_client or httpx.AsyncClient(timeout=timeout)

    async def _call(self, call: _Call[T]) -> T:
        attempt = 0
        while True:
            response: httpx.Response | None = None
            try:
                response = await self._http.send(self._request(call))
            except httpx.TransportError as exc:
                if not self._should_retry(attempt, None):
                    raise self._wrap(exc) from exc
            if response is not None and not self._should_retry(attempt, response):
                if response.is_error:
                    raise _error_from(response)
                return call.parse(response)
            await asyncio.sleep(self._retry_delay(attempt))
            attempt += 1

    async def wait_for_session(
        self,
        session_id: str,
        *,
        timeout: float = 300.0,
        poll_interval: float = 0.5,
        on_update: Callable[[SessionDetail], None] | None = None,
    ) -> SessionDetail:
        """Poll until the session is completed, failed or cancelled; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            session = await self.get_session(session_id)  # type: ignore[misc]
            if on_update is not None:
                on_update(session)
            if session.status in TERMINAL_SESSION:
                return session
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Session {session_id} still {session.status} after {timeout}s")
            await asyncio.sleep(poll_interval)

    async def stream_logs(
        self, *, last_event_id: int | None = None, **filters: Any
    ) -> AsyncIterator[dict[str, Any]]:
        """Follow the live log stream (SSE); yields records until the caller stops."""
        params = _log_params(**{k: filters.get(k) for k in _LOG_FILTERS})
        headers = {**self._headers(), "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        timeout = httpx.Timeout(self.timeout, read=None)
        async with self._http.stream(
            "GET",
            self.base_url + "/v1/opscore/logs/stream",
            params=params,
            headers=headers,
            timeout=timeout,
        ) as response:
            if response.is_error:
                await response.aread()
                raise _error_from(response)
            lines: list[str] = []
            async for line in response.aiter_lines():
                if line:
                    lines.append(line)
                    continue
                record = _sse_records(lines)
                lines = []
                if record is not None:
                    yield record

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncOpsCoreClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


_LOG_FILTERS = ("level", "logger", "agent_id", "session_id", "task_id", "text", "since", "until")
