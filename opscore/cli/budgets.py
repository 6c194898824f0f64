"""CLI commands for usage and budgets."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import api_command, app, emit_json, opts, out, table

budgets_app = typer.Typer(no_args_is_help=True, help="Budgets on workflows and agents.")
app.add_typer(budgets_app, name="budgets")
ScopeArg = Annotated[str, typer.Argument(help="workflow or agent.")]
IdArg = Annotated[str, typer.Argument(help="The workflow's or agent's id.")]


def _scope(scope: str) -> str:
    if scope not in ("workflow", "agent"):
        raise typer.BadParameter("workflow or agent", param_hint="SCOPE")
    return scope


@app.command("usage")
@api_command
def usage(ctx: typer.Context, scope: ScopeArg, ident: IdArg) -> None:
    """Tokens and cost reported, in all and today. Example: [bold]opscore usage workflow digest[/]"""
    with opts(ctx).client() as client:
        report = client.get_usage(_scope(scope), ident)  # type: ignore[arg-type]
    if opts(ctx).as_json:
        return emit_json(report)
    rows = [
        (when, t.input_tokens, t.output_tokens, f"{t.cost_usd:.4f}", t.reports)
        for when, t in (("total", report.total), (f"today ({report.day})", report.today))
    ]
    out.print(table(f"Usage of {scope} {ident}", ["", "IN", "OUT", "USD", "RESULTS"], rows))


@budgets_app.command("set")
@api_command
def set_(
    ctx: typer.Context,
    scope: ScopeArg,
    ident: IdArg,
    per: Annotated[str, typer.Option(help="run or day (agents: day).")] = "day",
    max_cost: Annotated[float | None, typer.Option("--max-cost", help="US dollars.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Input plus output tokens.")] = None,
    on_exceed: Annotated[str, typer.Option(help="wait or fail.")] = "wait",
) -> None:
    """Set a budget. Example: [bold]opscore budgets set workflow digest --max-cost 25[/]"""
    with opts(ctx).client() as client:
        budget = client.set_budget(
            _scope(scope),  # type: ignore[arg-type]
            ident,
            per=per,  # type: ignore[arg-type]
            max_cost_usd=max_cost,
            max_tokens=max_tokens,
            on_exceed=on_exceed,  # type: ignore[arg-type]
        )
    if opts(ctx).as_json:
        return emit_json(budget)
    out.print(f"Budget per {budget.per} on {budget.scope} [bold]{budget.id}[/] set")


@budgets_app.command("list")
@api_command
def list_(ctx: typer.Context) -> None:
    """Budgets. Example: [bold]opscore budgets list[/]"""
    with opts(ctx).client() as client:
        page = client.list_budgets()
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [
        (f"{b.scope} {b.id}", b.per, b.max_cost_usd or "-", b.max_tokens or "-", b.on_exceed)
        for b in page.items
    ]
    out.print(table(f"Budgets ({page.total})", ["ON", "PER", "USD", "TOKENS", "THEN"], rows))


@budgets_app.command("remove")
@api_command
def remove(
    ctx: typer.Context,
    scope: ScopeArg,
    ident: IdArg,
    per: Annotated[str, typer.Option(help="run or day.")] = "day",
) -> None:
    """Remove a budget. Example: [bold]opscore budgets remove workflow digest --per day[/]"""
    with opts(ctx).client() as client:
        client.remove_budget(_scope(scope), ident, per)  # type: ignore[arg-type]
    if opts(ctx).as_json:
        return emit_json({"removed": f"{scope}:{ident}:{per}"})
    out.print(f"Removed the budget per {per} on {scope} [bold]{ident}[/]")
