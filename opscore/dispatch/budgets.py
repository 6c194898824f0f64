"""Budgets: dispatch stops once a workflow or an agent has spent what it may.

Usage is added up by the workflow room (``workflow/usage.py``) in store documents, one per
run, per workflow and per agent, in all and per UTC day; this gate reads them before a task is
handed over. A workflow's budget per run or per day either holds its tasks in the queue
(``wait``) or fails them undispatched (``fail``); an agent's budget per day takes that agent out
of the candidates, so its tasks go to other agents or wait.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from ..models import Budget, Page, TaskRun, UsageTotals
from ..storage.base import Storage

BUDGET = "budget"
USAGE = "usage"
CACHE_SECONDS = 1.0
Verdict = Literal["go", "wait", "fail"]


def day_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d")


def usage_key(scope: str, ident: str, day: str | None = None) -> str:
    """The usage document of a run, workflow or agent (in all, or on ``day``)."""
    return f"{scope}:{ident}:{day}" if day else f"{scope}:{ident}"


def budget_key(scope: str, ident: str, per: str) -> str:
    return f"{scope}:{ident}:{per}"


class BudgetGate:
    """Whether a task may be handed over, as far as budgets go."""

    def __init__(self, storage: Storage, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.storage = storage
        self.clock = clock
        self._budgets: list[Budget] = []
        self._read_at = float("-inf")

    async def budgets(self) -> list[Budget]:
        """Every budget (read at most once a second)."""
        if self.clock() - self._read_at > CACHE_SECONDS:
            page = await self.storage.list_documents(BUDGET, offset=0, limit=10_000)
            self._budgets = [Budget.model_validate_json(d) for d in page.items]
            self._read_at = self.clock()
        return self._budgets

    def forget(self) -> None:
        self._read_at = float("-inf")

    async def totals(self, key: str) -> UsageTotals:
        raw = await self.storage.get_document(USAGE, key)
        return UsageTotals.model_validate_json(raw) if raw else UsageTotals()

    async def spent_by(self, budget: Budget, *, session_id: str | None, now: datetime) -> bool:
        if budget.per == "run":
            if session_id is None:
                return False
            totals = await self.totals(usage_key("run", session_id))
        else:
            totals = await self.totals(usage_key(budget.scope, budget.id, day_of(now)))
        return budget.spent(totals)

    async def check_task(self, task: TaskRun, now: datetime) -> tuple[Verdict, str]:
        """go, or wait/fail with the reason, for the budgets of the task's workflow."""
        if task.workflow_id is None:
            return "go", ""
        verdict: Verdict = "go"
        reason = ""
        for budget in await self.budgets():
            if budget.scope != "workflow" or budget.id != task.workflow_id:
                continue
            if await self.spent_by(budget, session_id=task.session_id, now=now):
                reason = f"workflow '{budget.id}' spent its budget per {budget.per}"
                if budget.on_exceed == "fail":
                    return "fail", reason
                verdict = "wait"
        return verdict, reason

    async def agent_spent(self, agent_id: str, now: datetime) -> bool:
        """Whether the agent has used up a budget of its own today."""
        for budget in await self.budgets():
            mine = budget.scope == "agent" and budget.id == agent_id
            if mine and await self.spent_by(budget, session_id=None, now=now):
                return True
        return False

    async def any_for_agents(self) -> bool:
        return any(b.scope == "agent" for b in await self.budgets())

    async def list_budgets(self) -> Page[Budget]:
        self.forget()
        items = sorted(await self.budgets(), key=lambda b: (b.scope, b.id, b.per))
        return Page(items=items, total=len(items), offset=0, limit=max(len(items), 1))
