"""CLI commands: validate a template offline, list a run's tasks, retry a failed run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..client import APIError
from .common import (
    api_command,
    app,
    emit_json,
    opts,
    out,
    styled,
    table,
    tasks_app,
    when,
    workflows_app,
)

runs_app = typer.Typer(no_args_is_help=True, help="Workflow runs.")
app.add_typer(runs_app, name="runs")


@workflows_app.command("validate")
def validate(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A .json or .yaml template.")
    ],
    max_tasks: Annotated[int, typer.Option(help="The service's OPSCORE_MAX_TEMPLATE_TASKS.")] = 200,
) -> None:
    """Check a template offline, with the service's own validation (no server needed).

    Example: [bold]opscore workflows validate examples/workflows/reviewed-digest.yaml[/]
    """
    # the service's parser and checks, loaded only for this command (the CLI stays light)
    from ..errors import OpsCoreError
    from ..workflow.templates import build_definition, parse_template_text

    try:
        data = parse_template_text(file.read_bytes(), content_type=file.suffix)
        definition = build_definition(data, max_tasks=max_tasks)
    except OpsCoreError as exc:
        if opts(ctx).as_json:
            emit_json(
                {"valid": False, "code": exc.code, "message": exc.message, "details": exc.details}
            )
        else:
            out.print(f"[red]invalid:[/] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if opts(ctx).as_json:
        return emit_json(
            {
                "valid": True,
                "id": definition.id,
                "version": definition.version,
                "tasks": len(definition.tasks),
            }
        )
    out.print(
        f"[green]valid:[/] {definition.id} version {definition.version} "
        f"({len(definition.tasks)} tasks)"
    )


@runs_app.command("retry")
@api_command
def retry(
    ctx: typer.Context, session_id: Annotated[str, typer.Argument(help="A failed run's session.")]
) -> None:
    """Retry a failed run: re-drive its dead-lettered tasks; the steps that completed stay done.

    Example: [bold]opscore runs retry <sessionId>[/]
    """
    with opts(ctx).client() as client:
        detail = client.get_session(session_id)
        letters = []
        offset = 0
        while True:
            page = client.list_dead_letters(offset=offset, limit=500)
            letters += [d for d in page.items if d.session_id == session_id]
            offset += len(page.items)
            if not page.items or offset >= page.total:
                break
        if not letters:
            raise APIError(
                f"Session {session_id} is {detail.status.value} with no dead-lettered task to "
                "re-drive",
                code="NOTHING_TO_RETRY",
            )
        retried = [client.redrive(letter.task_id) for letter in letters]
    if opts(ctx).as_json:
        return emit_json(retried)
    for task in retried:
        out.print(f"Re-drove [bold]{task.step_id}[/] ({task.task_id}): {styled(task.status.value)}")


@tasks_app.command("list")
@api_command
def tasks_list(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Option("--session", help="The run's session id.")],
    status: Annotated[str | None, typer.Option(help="Only tasks in this status.")] = None,
) -> None:
    """A run's tasks with status, agent, attempts and error.

    Example: [bold]opscore tasks list --session <sessionId> --status failed[/]
    """
    with opts(ctx).client() as client:
        detail = client.get_session(session_id)
    tasks = [t for t in detail.tasks if status is None or t.status.value == status]
    if opts(ctx).as_json:
        return emit_json(tasks)
    rows = [
        (
            t.task_id,
            t.step_id,
            styled(t.status.value),
            t.agent_id or "-",
            t.attempts,
            when(t.finished_at),
            t.error or t.skip_reason or "",
        )
        for t in tasks
    ]
    columns = ["TASK", "STEP", "STATUS", "AGENT", "ATTEMPTS", "FINISHED", "ERROR"]
    out.print(table(f"Tasks of {session_id} ({len(tasks)})", columns, rows))
