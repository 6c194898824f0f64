"""Usage (what agents reported spending) and budgets on it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Path, Response, status

from ...models import ID_PATTERN, Budget, BudgetSet, Page, UsageReport, UsageTotals
from ..deps import ServicesDep, require
from . import ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore", tags=["usage and budgets"], responses=ERRORS)
Scope = Annotated[Literal["workflow", "agent"], Path(description="workflow or agent")]
Ident = Annotated[
    str, Path(pattern=ID_PATTERN, description="The workflow's or agent's id.", examples=["digest"])
]


@router.get(
    "/usage/{scope}/{ident}",
    summary="A workflow's or an agent's usage",
    response_model=UsageReport,
    dependencies=[require("read")],
)
async def usage(scope: Scope, ident: Ident, services: ServicesDep) -> UsageReport:
    """Tokens and cost its agents reported with results, in all and today (UTC)."""
    return await services.workflow.usage.report(scope, ident)


@router.get(
    "/sessions/{sessionId}/usage",
    summary="A run's usage",
    response_model=UsageTotals,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def run_usage(
    sessionId: Annotated[
        str, Path(pattern=ID_PATTERN, examples=["9b2599f1-ed80-4ff0-895a-60dda642c208"])
    ],
    services: ServicesDep,
) -> UsageTotals:
    return await services.workflow.usage.run_usage(sessionId)


@router.get(
    "/budgets", summary="Budgets", response_model=Page[Budget], dependencies=[require("read")]
)
async def list_budgets(services: ServicesDep) -> Page[Budget]:
    return await services.workflow.usage.list_budgets()


@router.put(
    "/budgets/{scope}/{ident}",
    summary="Set a budget on a workflow or an agent",
    response_model=Budget,
    dependencies=[require("workflows:write")],
)
async def set_budget(
    scope: Scope,
    ident: Ident,
    body: Annotated[
        BudgetSet, Body(examples=[{"per": "day", "maxCostUsd": 25, "onExceed": "wait"}])
    ],
    services: ServicesDep,
) -> Budget:
    """Once the workflow (per run or per UTC day) or the agent (per day) has spent
    `maxCostUsd` or `maxTokens`, no more of its tasks are handed over: they wait, or fail
    (`onExceed`), and a `budget.exceeded` event goes out once per period."""
    return await services.workflow.usage.set_budget(scope, ident, body)


@router.delete(
    "/budgets/{scope}/{ident}/{per}",
    summary="Remove a budget",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    dependencies=[require("workflows:write")],
)
async def remove_budget(
    scope: Scope,
    ident: Ident,
    per: Annotated[Literal["run", "day"], Path()],
    services: ServicesDep,
) -> Response:
    await services.workflow.usage.remove_budget(scope, ident, per)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
