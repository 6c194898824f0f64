"""CLI commands: workflow templates (``opscore workflows``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import (
    api_command,
    emit_json,
    opts,
    out,
    table,
    workflows_app,
)


# --- workflows --------------------------------------------------------------------------------
@workflows_app.command("create")
@api_command
def workflows_create(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A .json or .yaml template.")
    ],
) -> None:
    """Store a template from a JSON or YAML file.

    Example: [bold]opscore workflows create examples/workflows/digest.yaml[/]
    """
    with opts(ctx).client() as client:
        template = client.create_workflow(file.read_text(encoding="utf-8"))
    if opts(ctx).as_json:
        return emit_json(template)
    out.print(
        f"Stored workflow [bold]{template.id}[/] version {template.version} ({len(template.tasks)} tasks)"
    )


@workflows_app.command("list")
@api_command
def workflows_list(
    ctx: typer.Context, limit: Annotated[int, typer.Option(help="Page size.")] = 50
) -> None:
    """List templates (newest version of each). Example: [bold]opscore workflows list[/]"""
    with opts(ctx).client() as client:
        page = client.list_workflows(limit=limit)
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [(t.id, t.version, t.name, len(t.tasks), t.source) for t in page.items]
    out.print(
        table(f"Workflows ({page.total})", ["ID", "VERSION", "NAME", "TASKS", "SOURCE"], rows)
    )


@workflows_app.command("show")
@api_command
def workflows_show(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="Template id.")],
    version: Annotated[str | None, typer.Option(help="A version; newest if omitted.")] = None,
) -> None:
    """Show a template's tasks. Example: [bold]opscore workflows show digest[/]"""
    with opts(ctx).client() as client:
        template = client.get_workflow(workflow_id, version=version)
    if opts(ctx).as_json:
        return emit_json(template)
    rows = [
        (
            t.task_id,
            t.agent_id or t.agent_capability or "any",
            t.next_task_id or "-",
            ", ".join(t.depends_on) or "-",
            t.fallback_task_id or "-",
            t.priority,
        )
        for t in template.tasks
    ]
    out.print(
        table(
            f"{template.id} v{template.version}: {template.name}",
            ["TASK", "TARGET", "NEXT", "DEPENDS ON", "FALLBACK", "PRIORITY"],
            rows,
        )
    )


@workflows_app.command("delete")
@api_command
def workflows_delete(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="Template id.")],
    version: Annotated[str | None, typer.Option(help="Only this version.")] = None,
) -> None:
    """Delete a template (all versions unless --version). Example: [bold]opscore workflows delete digest[/]"""
    with opts(ctx).client() as client:
        client.delete_workflow(workflow_id, version=version)
    if not opts(ctx).as_json:
        out.print(f"Deleted workflow [bold]{workflow_id}[/]")
