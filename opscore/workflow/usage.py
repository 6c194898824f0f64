"""Usage added up, and budgets kept: what agents report spending, per task, run, workflow and
agent, in all and per UTC day; a ``budget.exceeded`` event once per budget and period.

Totals are store documents changed by compare-and-set, so replicas add up into the same ones;
``dispatch/budgets.py`` reads them before each hand-over.
"""

from __future__ import annotations

import logging
from typing import Any

from ..dispatch.budgets import BUDGET, USAGE, BudgetGate, budget_key, day_of, usage_key
from ..errors import NotFoundError, UnprocessableError
from ..models import Budget, BudgetSet, Page, TaskRun, UsageReport, UsageTotals
from ..observe.logs import log_operation
from ..storage.change import change_document
from .engine import WorkflowEngine

logger = logging.getLogger("opscore.usage")


class UsageLedger:
    """Adds reported usage up; sets, lists and removes budgets."""

    def __init__(self, engine: WorkflowEngine, gate: BudgetGate) -> None:
        self.engine = engine
        self.storage = engine.storage
        self.gate = gate

    async def record(self, task: TaskRun, usage: dict[str, Any] | None) -> None:
        """Add a result's usage to its run, workflow and agent (in all and today)."""
        if not usage:
            return
        now = self.engine.clock()
        day = day_of(now)
        keys = [usage_key("run", task.session_id)]
        if task.workflow_id:
            keys += [
                usage_key("workflow", task.workflow_id),
                usage_key("workflow", task.workflow_id, day),
            ]
        if task.agent_id:
            keys += [usage_key("agent", task.agent_id), usage_key("agent", task.agent_id, day)]
        for key in keys:
            await self._add(key, usage)
        await self._check(task, day)

    async def _add(self, key: str, usage: dict[str, Any]) -> None:
        def plus(raw: str | None) -> str:
            totals = UsageTotals.model_validate_json(raw) if raw else UsageTotals()
            return totals.plus(usage).model_dump_json()

        await change_document(self.storage, USAGE, key, plus)

    async def _check(self, task: TaskRun, day: str) -> None:
        """Tell subscribers, once per budget and period, that a budget was used up."""
        for budget in await self.gate.budgets():
            mine = (budget.scope == "workflow" and budget.id == task.workflow_id) or (
                budget.scope == "agent" and budget.id == task.agent_id
            )
            if not mine:
                continue
            period = task.session_id if budget.per == "run" else day
            key = (
                usage_key("run", task.session_id)
                if budget.per == "run"
                else usage_key(budget.scope, budget.id, day)
            )
            totals = await self.gate.totals(key)
            if not budget.spent(totals) or budget.exceeded_period == period:
                continue
            raw = await self.storage.get_document(
                BUDGET, budget_key(budget.scope, budget.id, budget.per)
            )
            if raw is None:
                continue
            marked = Budget.model_validate_json(raw).model_copy(update={"exceeded_period": period})
            if not await self.storage.put_document(
                BUDGET,
                budget_key(budget.scope, budget.id, budget.per),
                marked.model_dump_json(),
                due_at=None,
                expect=raw,
            ):
                continue  # another replica marked it (and tells)
            self.gate.forget()
            log_operation(
                "budget.exceeded",
                {"scope": budget.scope, "id": budget.id, "per": budget.per, "period": period},
                level=logging.WARNING,
            )
            await self.engine.publish(
                "budget.exceeded",
                {
                    "scope": budget.scope,
                    "id": budget.id,
                    "per": budget.per,
                    "period": period,
                    "spent": totals.model_dump(mode="json", by_alias=True),
                    "maxCostUsd": budget.max_cost_usd,
                    "maxTokens": budget.max_tokens,
                    "onExceed": budget.on_exceed,
                    "sessionId": task.session_id,
                },
            )

    async def report(self, scope: str, ident: str) -> UsageReport:
        day = day_of(self.engine.clock())
        return UsageReport(
            scope=scope,  # type: ignore[arg-type]
            id=ident,
            total=await self.gate.totals(usage_key(scope, ident)),
            today=await self.gate.totals(usage_key(scope, ident, day)),
            day=day,
        )

    async def run_usage(self, session_id: str) -> UsageTotals:
        await self.engine.get_session(session_id)
        return await self.gate.totals(usage_key("run", session_id))

    async def set_budget(self, scope: str, ident: str, body: BudgetSet) -> Budget:
        if scope == "agent" and body.per == "run":
            raise UnprocessableError(
                "An agent's budget is per day; per run applies to workflows", code="INVALID_BUDGET"
            )
        budget = Budget(scope=scope, id=ident, updated_at=self.engine.clock(), **body.model_dump())  # type: ignore[arg-type]
        await self.storage.put_document(
            BUDGET, budget_key(scope, ident, body.per), budget.model_dump_json(), due_at=None
        )
        self.gate.forget()
        log_operation("budget.set", {"scope": scope, "id": ident, "per": body.per})
        self.engine.notify_dispatcher()  # a raised budget lets waiting tasks go
        return budget

    async def remove_budget(self, scope: str, ident: str, per: str) -> None:
        if not await self.storage.delete_document(BUDGET, budget_key(scope, ident, per)):
            raise NotFoundError(
                f"No budget per {per} on {scope} '{ident}'", code="BUDGET_NOT_FOUND"
            )
        self.gate.forget()
        self.engine.notify_dispatcher()

    async def list_budgets(self) -> Page[Budget]:
        return await self.gate.list_budgets()
