"""Token usage an agent reports with a result: ``usage: {inputTokens, outputTokens, costUsd,
model}``, what it adds up to, and budgets on it.

Read leniently (camelCase as the wire speaks, snake_case as many SDKs do) and strictly at once:
anything that is not a small non-negative number is left out rather than trusted, since it ends
up as span attributes, in totals and in budgets.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from .common import ID_PATTERN, ApiModel

_LIMIT = 10**12
_MAX_COST = 1e9


def usage_from(value: Any) -> dict[str, Any] | None:
    """{"input_tokens", "output_tokens", "cost_usd", "model"} (each only when given and sane),
    or None."""
    if not isinstance(value, dict):
        return None
    usage: dict[str, Any] = {}
    for wire, snake in (("inputTokens", "input_tokens"), ("outputTokens", "output_tokens")):
        count = value.get(wire, value.get(snake))
        if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < _LIMIT:
            usage[snake] = count
    cost = value.get("costUsd", value.get("cost_usd"))
    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and _sane_cost(float(cost)):
        usage["cost_usd"] = float(cost)
    model = value.get("model")
    if isinstance(model, str) and 0 < len(model) <= 200:
        usage["model"] = model
    return usage or None


def _sane_cost(cost: float) -> bool:
    return math.isfinite(cost) and 0 <= cost < _MAX_COST


class UsageTotals(ApiModel):
    """Usage added up (a task, a run, a workflow or an agent, in all or on one day)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    reports: int = Field(0, description="Results that carried usage.")

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def plus(self, usage: dict[str, Any]) -> UsageTotals:
        return UsageTotals(
            input_tokens=self.input_tokens + int(usage.get("input_tokens", 0)),
            output_tokens=self.output_tokens + int(usage.get("output_tokens", 0)),
            cost_usd=round(self.cost_usd + float(usage.get("cost_usd", 0.0)), 9),
            reports=self.reports + 1,
        )


class UsageReport(ApiModel):
    """A workflow's or an agent's usage: in all and today (UTC)."""

    scope: Literal["workflow", "agent"]
    id: str
    total: UsageTotals
    today: UsageTotals
    day: str = Field(description="Today, UTC (YYYY-MM-DD).")


class BudgetSet(ApiModel):
    """At most this much spent per run or per day; then dispatch stops."""

    model_config = ConfigDict(extra="forbid")

    per: Literal["run", "day"] = Field(
        "day", description="run: each run of a workflow; day: a UTC day (workflow or agent)."
    )
    max_cost_usd: float | None = Field(None, gt=0, le=_MAX_COST, examples=[25.0])
    max_tokens: int | None = Field(None, gt=0, lt=_LIMIT, examples=[2_000_000])
    on_exceed: Literal["wait", "fail"] = Field(
        "wait",
        description=(
            "wait: tasks stay queued until the budget has room (a new day, a raised budget); "
            "fail: the task fails undispatched and its run fails."
        ),
    )

    @model_validator(mode="after")
    def _something_to_spend(self) -> BudgetSet:
        if self.max_cost_usd is None and self.max_tokens is None:
            raise ValueError("give maxCostUsd, maxTokens or both")
        return self


class Budget(BudgetSet):
    scope: Literal["workflow", "agent"]
    id: str = Field(pattern=ID_PATTERN)
    exceeded_period: str | None = Field(
        None, description="The run or day for which budget.exceeded was last sent."
    )
    updated_at: datetime | None = None

    def spent(self, totals: UsageTotals) -> bool:
        """Whether ``totals`` use the budget up."""
        over_cost = self.max_cost_usd is not None and totals.cost_usd >= self.max_cost_usd
        over_tokens = self.max_tokens is not None and totals.tokens >= self.max_tokens
        return over_cost or over_tokens
