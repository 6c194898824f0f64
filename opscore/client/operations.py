"""The SDK's routes for operating the service: events out, schedules, usage, budgets, limits
and logs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic.alias_generators import to_camel as _camel

from ..models import (
    Budget,
    CapabilityLimit,
    Delivery,
    Page,
    RunAccepted,
    Schedule,
    Subscription,
    SubscriptionCreated,
    UsageReport,
    UsageTotals,
)
from .calls import _Call, _clean, _Sender


class _OperationsEndpoints(_Sender):
    """The routes operators run the service with: events out, schedules, usage and budgets,
    concurrency limits, logs."""

    # --- events out ------------------------------------------------------------------------
    def create_subscription(
        self,
        url: str,
        events: list[str],
        *,
        description: str = "",
        secret: str | None = None,
    ) -> SubscriptionCreated:
        """Subscribe a URL to events; the answer holds the signing secret (shown once)."""
        body = _clean({"url": url, "events": events, "description": description, "secret": secret})
        return self._call(
            _Call("POST", "/v1/opscore/subscriptions", SubscriptionCreated, json=body)
        )

    def list_subscriptions(self, *, offset: int = 0, limit: int = 50) -> Page[Subscription]:
        params = {"offset": offset, "limit": limit}
        return self._call(
            _Call("GET", "/v1/opscore/subscriptions", Page[Subscription], params=params)
        )

    def get_subscription(self, subscription_id: str) -> Subscription:
        return self._call(
            _Call("GET", f"/v1/opscore/subscriptions/{subscription_id}", Subscription)
        )

    def update_subscription(
        self,
        subscription_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        description: str | None = None,
        active: bool | None = None,
    ) -> Subscription:
        """Change what is given; ``active=False`` pauses the subscription."""
        body = _clean({"url": url, "events": events, "description": description, "active": active})
        return self._call(
            _Call("PATCH", f"/v1/opscore/subscriptions/{subscription_id}", Subscription, json=body)
        )

    def delete_subscription(self, subscription_id: str) -> None:
        return self._call(_Call("DELETE", f"/v1/opscore/subscriptions/{subscription_id}"))

    def list_deliveries(
        self, subscription_id: str, *, offset: int = 0, limit: int = 50
    ) -> Page[Delivery]:
        """A subscription's delivery log, newest first."""
        return self._call(
            _Call(
                "GET",
                f"/v1/opscore/subscriptions/{subscription_id}/deliveries",
                Page[Delivery],
                params={"offset": offset, "limit": limit},
            )
        )

    def redeliver(self, subscription_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again now, with fresh attempts."""
        path = f"/v1/opscore/subscriptions/{subscription_id}/deliveries/{delivery_id}/redeliver"
        return self._call(_Call("POST", path, Delivery))

    def ping_subscription(self, subscription_id: str) -> Delivery:
        """Queue a test event (type ``ping``) for one subscription."""
        return self._call(
            _Call("POST", f"/v1/opscore/subscriptions/{subscription_id}/ping", Delivery)
        )

    # --- schedules -------------------------------------------------------------------------
    def create_schedule(
        self,
        workflow_id: str,
        *,
        cron: str | None = None,
        interval_seconds: float | None = None,
        timezone: str | None = None,
        payload: dict[str, Any] | None = None,
        schedule_id: str | None = None,
        overlap: Literal["skip", "queue_one", "allow"] | None = None,
        catch_up: Literal["skip", "one", "all"] | None = None,
        version: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Schedule:
        """Run a template on a cron expression (read in ``timezone``) or every N seconds."""
        body = _clean(
            {
                "workflowId": workflow_id,
                "scheduleId": schedule_id,
                "cron": cron,
                "intervalSeconds": interval_seconds,
                "timezone": timezone,
                "payload": payload,
                "overlap": overlap,
                "catchUp": catch_up,
                "version": version,
                "metadata": metadata,
            }
        )
        return self._call(_Call("POST", "/v1/opscore/schedules", Schedule, json=body))

    def list_schedules(self, *, offset: int = 0, limit: int = 50) -> Page[Schedule]:
        params = {"offset": offset, "limit": limit}
        return self._call(_Call("GET", "/v1/opscore/schedules", Page[Schedule], params=params))

    def get_schedule(self, schedule_id: str) -> Schedule:
        return self._call(_Call("GET", f"/v1/opscore/schedules/{schedule_id}", Schedule))

    def update_schedule(self, schedule_id: str, **changes: Any) -> Schedule:
        """Change fields by their Python names (cron, interval_seconds, timezone, payload,
        overlap, catch_up, version, metadata, paused)."""
        body = _clean({_camel(k): v for k, v in changes.items()})
        return self._call(
            _Call("PATCH", f"/v1/opscore/schedules/{schedule_id}", Schedule, json=body)
        )

    def pause_schedule(self, schedule_id: str) -> Schedule:
        return self._call(_Call("POST", f"/v1/opscore/schedules/{schedule_id}/pause", Schedule))

    def resume_schedule(self, schedule_id: str) -> Schedule:
        return self._call(_Call("POST", f"/v1/opscore/schedules/{schedule_id}/resume", Schedule))

    def trigger_schedule(self, schedule_id: str) -> RunAccepted:
        """One run now with the schedule's payload."""
        return self._call(
            _Call("POST", f"/v1/opscore/schedules/{schedule_id}/trigger", RunAccepted)
        )

    def delete_schedule(self, schedule_id: str) -> None:
        return self._call(_Call("DELETE", f"/v1/opscore/schedules/{schedule_id}"))

    # --- usage and budgets -----------------------------------------------------------------
    def get_usage(self, scope: Literal["workflow", "agent"], ident: str) -> UsageReport:
        """What a workflow's or an agent's tasks reported spending, in all and today."""
        return self._call(_Call("GET", f"/v1/opscore/usage/{scope}/{ident}", UsageReport))

    def run_usage(self, session_id: str) -> UsageTotals:
        return self._call(_Call("GET", f"/v1/opscore/sessions/{session_id}/usage", UsageTotals))

    def set_budget(
        self,
        scope: Literal["workflow", "agent"],
        ident: str,
        *,
        per: Literal["run", "day"] = "day",
        max_cost_usd: float | None = None,
        max_tokens: int | None = None,
        on_exceed: Literal["wait", "fail"] = "wait",
    ) -> Budget:
        """Stop dispatch for a workflow (per run or day) or an agent (per day) once spent."""
        body = _clean(
            {
                "per": per,
                "maxCostUsd": max_cost_usd,
                "maxTokens": max_tokens,
                "onExceed": on_exceed,
            }
        )
        return self._call(_Call("PUT", f"/v1/opscore/budgets/{scope}/{ident}", Budget, json=body))

    def list_budgets(self) -> Page[Budget]:
        return self._call(_Call("GET", "/v1/opscore/budgets", Page[Budget]))

    def remove_budget(
        self, scope: Literal["workflow", "agent"], ident: str, per: Literal["run", "day"]
    ) -> None:
        return self._call(_Call("DELETE", f"/v1/opscore/budgets/{scope}/{ident}/{per}"))

    # --- concurrency limits ----------------------------------------------------------------
    def list_limits(self) -> Page[CapabilityLimit]:
        """Limited capabilities, each with how many of its tasks hold a slot now."""
        return self._call(_Call("GET", "/v1/opscore/limits", Page[CapabilityLimit]))

    def set_limit(self, capability: str, max_running: int) -> CapabilityLimit:
        """At most ``max_running`` tasks of the capability at once, across replicas."""
        return self._call(
            _Call(
                "PUT",
                f"/v1/opscore/limits/capabilities/{capability}",
                CapabilityLimit,
                json={"maxRunning": max_running},
            )
        )

    def remove_limit(self, capability: str) -> None:
        return self._call(_Call("DELETE", f"/v1/opscore/limits/capabilities/{capability}"))

    # --- logs -----------------------------------------------------------------------------
    def logs(
        self,
        *,
        level: str | None = None,
        logger: str | None = None,
        agent_id: str | None = None,
        session_id: str | None = None,
        task_id: str | None = None,
        text: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        order: Literal["asc", "desc"] = "desc",
        offset: int = 0,
        limit: int = 100,
    ) -> Page[dict[str, Any]]:
        params = _log_params(level, logger, agent_id, session_id, task_id, text, since, until)
        params.update(order=order, offset=offset, limit=limit)
        return self._call(_Call("GET", "/v1/opscore/logs", Page[dict[str, Any]], params=params))


def _log_params(
    level: str | None,
    logger: str | None,
    agent_id: str | None,
    session_id: str | None,
    task_id: str | None,
    text: str | None,
    since: datetime | None,
    until: datetime | None,
) -> dict[str, Any]:
    return _clean(
        {
            "level": level.upper() if level else None,
            "logger": logger,
            "agentId": agent_id,
            "sessionId": session_id,
            "taskId": task_id,
            "q": text,
            "since": since.isoformat() if since else None,
            "until": until.isoformat() if until else None,
        }
    )
