"""CLI commands for concurrency limits on capabilities."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import api_command, app, emit_json, opts, out, table

limits_app = typer.Typer(no_args_is_help=True, help="Concurrency limits on capabilities.")
app.add_typer(limits_app, name="limits")
CapabilityArg = Annotated[str, typer.Argument(help="The capability.")]


@limits_app.command("list")
@api_command
def list_(ctx: typer.Context) -> None:
    """Limited capabilities and what runs now. Example: [bold]opscore limits list[/]"""
    with opts(ctx).client() as client:
        page = client.list_limits()
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [(c.capability, c.max_running, c.running or 0) for c in page.items]
    out.print(table(f"Limits ({page.total})", ["CAPABILITY", "MAX RUNNING", "RUNNING"], rows))


@limits_app.command("set")
@api_command
def set_(
    ctx: typer.Context,
    capability: CapabilityArg,
    max_running: Annotated[int, typer.Argument(help="Most tasks of it running at once.")],
) -> None:
    """Limit a capability. Example: [bold]opscore limits set summarize 4[/]"""
    with opts(ctx).client() as client:
        limit = client.set_limit(capability, max_running)
    if opts(ctx).as_json:
        return emit_json(limit)
    out.print(f"At most {limit.max_running} [bold]{limit.capability}[/] tasks at once")


@limits_app.command("remove")
@api_command
def remove(ctx: typer.Context, capability: CapabilityArg) -> None:
    """Remove a capability's limit. Example: [bold]opscore limits remove summarize[/]"""
    with opts(ctx).client() as client:
        client.remove_limit(capability)
    if opts(ctx).as_json:
        return emit_json({"removed": capability})
    out.print(f"No limit on [bold]{capability}[/] any more")
