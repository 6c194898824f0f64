"""CLI commands for steps that wait: list them, approve or reject one, signal a run."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import api_command, app, emit_json, opts, out, parse_json_option, styled, table, when

Comment = Annotated[str | None, typer.Option(help="Why; recorded with the decision.")]
Payload = Annotated[
    str | None, typer.Option(help="JSON object for later steps (${tasks.<id>.result.payload}).")
]


@app.command("waiting")
@api_command
def waiting(
    ctx: typer.Context,
    kind: Annotated[str | None, typer.Option(help="approval or signal.")] = None,
    session: Annotated[str | None, typer.Option(help="Only this session's steps.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
) -> None:
    """Steps waiting for a decision. Example: [bold]opscore waiting --kind approval[/]"""
    if kind not in (None, "approval", "signal"):
        raise typer.BadParameter("approval or signal", param_hint="--kind")
    with opts(ctx).client() as client:
        page = client.list_waiting(kind=kind, session_id=session, limit=limit)  # type: ignore[arg-type]
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [
        (
            w.task_id,
            w.kind if w.kind == "approval" else f"signal {w.signal}",
            w.workflow_id or "-",
            w.step_id,
            w.prompt,
            when(w.waiting_since),
            f"{when(w.deadline)} ({w.on_timeout})" if w.deadline else "-",
        )
        for w in page.items
    ]
    out.print(
        table(
            f"Waiting for a decision ({page.total})",
            ["TASK", "WAITS FOR", "WORKFLOW", "STEP", "PROMPT", "SINCE", "DEADLINE"],
            rows,
        )
    )


def _decide(ctx: typer.Context, verb: str, task_id: str, comment: str | None, payload: Any) -> None:
    body = parse_json_option(payload, "--payload")
    with opts(ctx).client() as client:
        decide = client.approve if verb == "approve" else client.reject
        task = decide(task_id, comment=comment, payload=body)
    if opts(ctx).as_json:
        return emit_json(task)
    past = "Approved" if verb == "approve" else "Rejected"
    out.print(f"{past} [bold]{task.task_id}[/] ({task.step_id}): {styled(task.status.value)}")


@app.command("approve")
@api_command
def approve(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="The waiting step's task id.")],
    comment: Comment = None,
    payload: Payload = None,
) -> None:
    """Approve a waiting step. Example: [bold]opscore approve task-... --comment "ship it"[/]"""
    _decide(ctx, "approve", task_id, comment, payload)


@app.command("reject")
@api_command
def reject(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="The waiting step's task id.")],
    comment: Comment = None,
    payload: Payload = None,
) -> None:
    """Reject a waiting step. Example: [bold]opscore reject task-... --comment "not yet"[/]"""
    _decide(ctx, "reject", task_id, comment, payload)


@app.command("signal")
@api_command
def signal(
    ctx: typer.Context,
    session_id: Annotated[str, typer.Argument(help="The run's session id.")],
    name: Annotated[str, typer.Argument(help="The signal's name.")],
    payload: Annotated[str | None, typer.Option(help="JSON object sent with the signal.")] = None,
) -> None:
    """Send a named signal to a run. Example: [bold]opscore signal <session> paid --payload '{"eur": 4}'[/]"""
    body = parse_json_option(payload, "--payload")
    with opts(ctx).client() as client:
        tasks = client.send_signal(session_id, name, payload=body)
    if opts(ctx).as_json:
        return emit_json(tasks)
    for task in tasks:
        out.print(
            f"Signalled [bold]{task.task_id}[/] ({task.step_id}): {styled(task.status.value)}"
        )
