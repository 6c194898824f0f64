"""CLI commands: start and follow a run (``opscore run``), runs and sessions, tasks and dead
letters."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from ..client import OpsCoreClient
from .common import (
    EXIT_RUN_FAILED,
    EXIT_TIMEOUT,
    api_command,
    app,
    dead_app,
    emit_json,
    err,
    opts,
    out,
    parse_json_option,
    sessions_app,
    styled,
    table,
    tasks_app,
    when,
)


# --- runs and sessions ------------------------------------------------------------------------
def session_table(detail: Any) -> Table:
    rows = []
    for t in detail.tasks:
        took = (
            (t.finished_at - t.started_at).total_seconds()
            if t.finished_at and t.started_at
            else None
        )
        rows.append(
            (
                t.step_id,
                styled(t.status.value),
                t.agent_id or "-",
                t.attempts,
                f"{took:.2f}s" if took is not None else "-",
                (t.error or "")[:60],
            )
        )
    title = (
        f"Session {detail.session_id} [{styled(detail.status.value)}] {detail.workflow_id or ''}"
    )
    grid = table(title, ["TASK", "STATUS", "AGENT", "ATTEMPTS", "TOOK", "ERROR"], rows)
    reasons = waiting_for(detail)
    if reasons:
        grid.caption = "waiting: " + "; ".join(reasons)
        grid.caption_justify = "left"
    return grid


def waiting_for(detail: Any, now: datetime | None = None) -> list[str]:
    """What an unfinished run waits for, and since when, in words."""
    now = now or datetime.now(UTC)

    def since(moment: datetime | None) -> str:
        return f" for {max((now - moment).total_seconds(), 0):.0f}s" if moment else ""

    if detail.status.value == "queued":
        return [f"a run slot (the workflow's maxConcurrentRuns){since(detail.created_at)}"]
    reasons = []
    for t in detail.tasks:
        status = t.status.value
        if status == "queued":
            target = (
                f"agent '{t.target_agent_id}'"
                if t.target_agent_id
                else f"an available agent with capability '{t.agent_capability}'"
                if t.agent_capability
                else "an available agent"
            )
            ready = t.ready_at if t.ready_at and t.ready_at <= now else None
            later = f" (retry at {when(t.ready_at)})" if t.ready_at and t.ready_at > now else ""
            reasons.append(f"{t.step_id} waits for {target}{since(ready)}{later}")
        elif status == "waiting":
            wait = t.wait
            what = (
                f"signal '{wait.signal}'"
                if t.kind == "signal" and wait
                else f"an approval ({wait.prompt})"
                if wait and wait.prompt
                else "an approval"
            )
            reasons.append(f"{t.step_id} waits for {what}{since(t.started_at)}")
        elif status in ("dispatched", "running"):
            reasons.append(f"{t.step_id} runs on {t.agent_id}{since(t.dispatched_at)}")
    return reasons


@app.command("run")
@api_command
def run(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="Template id.")],
    payload: Annotated[str | None, typer.Option(help="initialPayload as a JSON object.")] = None,
    payload_file: Annotated[
        Path | None, typer.Option(exists=True, help="initialPayload from a JSON file.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Pin the run to this agent.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Repeat safely with the same key.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run until it ends.")] = False,
    wait_timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 300.0,
) -> None:
    """Start a run of a stored template; with --wait, show its tasks live until it ends.

    Example: [bold]opscore run digest --payload '{"topic": "agents"}' --wait[/]
    """
    body = parse_json_option(payload, "--payload")
    if payload_file is not None:
        body = parse_json_option(payload_file.read_text(encoding="utf-8"), "--payload-file")
    with opts(ctx).client() as client:
        if agent:
            accepted = client.trigger_workflow(
                agent, workflow_id=workflow_id, payload=body, idempotency_key=idempotency_key
            )
        else:
            accepted = client.run_workflow(workflow_id, body, idempotency_key=idempotency_key)
        if not wait:
            if opts(ctx).as_json:
                return emit_json(accepted)
            out.print(f"Started session [bold]{accepted.session_id}[/] of {accepted.workflow_id}")
            return None
        detail = _follow(client, accepted.session_id, wait_timeout, live=not opts(ctx).as_json)
    if opts(ctx).as_json:
        emit_json(detail)
    if detail.status.value != "completed":
        raise typer.Exit(EXIT_RUN_FAILED)
    return None


def _follow(client: OpsCoreClient, session_id: str, timeout: float, *, live: bool) -> Any:
    if not live:
        return _wait(client, session_id, timeout, None)
    with Live(console=out, auto_refresh=False, transient=False) as display:
        return _wait(
            client, session_id, timeout, lambda d: display.update(session_table(d), refresh=True)
        )


def _wait(client: OpsCoreClient, session_id: str, timeout: float, on_update: Any) -> Any:
    try:
        return client.wait_for_session(
            session_id, timeout=timeout, poll_interval=0.25, on_update=on_update
        )
    except TimeoutError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(EXIT_TIMEOUT) from None


@sessions_app.command("list")
@api_command
def sessions_list(
    ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="running, completed, failed, cancelled.")
    ] = None,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this template.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only runs pinned to this agent.")] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 20,
) -> None:
    """List sessions, newest first. Example: [bold]opscore sessions list --status failed[/]"""
    with opts(ctx).client() as client:
        page = client.list_sessions(
            status=status, workflow_id=workflow, agent_id=agent, limit=limit
        )
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [
        (
            s.session_id,
            s.workflow_id or s.name or "-",
            styled(s.status.value),
            s.agent_id or "-",
            when(s.created_at),
            when(s.finished_at),
        )
        for s in page.items
    ]
    out.print(
        table(
            f"Sessions ({page.total})",
            ["ID", "WORKFLOW", "STATUS", "AGENT", "STARTED", "FINISHED"],
            rows,
        )
    )


@sessions_app.command("show")
@api_command
def sessions_show(
    ctx: typer.Context, session_id: Annotated[str, typer.Argument(help="Session id.")]
) -> None:
    """A session with its tasks. Example: [bold]opscore sessions show <id>[/]"""
    with opts(ctx).client() as client:
        detail = client.get_session(session_id)
    if opts(ctx).as_json:
        return emit_json(detail)
    out.print(session_table(detail))
    if detail.error:
        out.print(f"[red]error:[/] {detail.error}")


@sessions_app.command("cancel")
@api_command
def sessions_cancel(
    ctx: typer.Context, session_id: Annotated[str, typer.Argument(help="Session id.")]
) -> None:
    """Cancel a running session. Example: [bold]opscore sessions cancel <id>[/]"""
    with opts(ctx).client() as client:
        detail = client.cancel_session(session_id)
    if opts(ctx).as_json:
        return emit_json(detail)
    out.print(f"Cancelled session [bold]{detail.session_id}[/]")


# --- tasks and dead letters -------------------------------------------------------------------
@tasks_app.command("show")
@api_command
def tasks_show(
    ctx: typer.Context, task_id: Annotated[str, typer.Argument(help="Task run id.")]
) -> None:
    """A task run with its attempts. Example: [bold]opscore tasks show task-...[/]"""
    with opts(ctx).client() as client:
        task = client.get_task(task_id)
    if opts(ctx).as_json:
        return emit_json(task)
    rows = [
        (
            a.attempt,
            a.agent_id or "-",
            when(a.dispatched_at),
            when(a.finished_at),
            a.outcome or "-",
            a.error or "",
        )
        for a in task.history
    ]
    out.print(
        table(
            f"Task {task.task_id} ({task.step_id}) [{styled(task.status.value)}]",
            ["#", "AGENT", "DISPATCHED", "FINISHED", "OUTCOME", "ERROR"],
            rows,
        )
    )


@dead_app.command("list")
@api_command
def dead_list(
    ctx: typer.Context, limit: Annotated[int, typer.Option(help="Page size.")] = 50
) -> None:
    """Tasks that exhausted their retries. Example: [bold]opscore dead-letters list[/]"""
    with opts(ctx).client() as client:
        page = client.list_dead_letters(limit=limit)
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [
        (d.task_id, d.session_id, d.step_id, d.attempts, when(d.dead_lettered_at), d.error or "")
        for d in page.items
    ]
    out.print(
        table(
            f"Dead letters ({page.total})",
            ["TASK", "SESSION", "STEP", "ATTEMPTS", "WHEN", "ERROR"],
            rows,
        )
    )


@dead_app.command("redrive")
@api_command
def dead_redrive(
    ctx: typer.Context, task_id: Annotated[str, typer.Argument(help="Task run id.")]
) -> None:
    """Give a dead-lettered task fresh attempts. Example: [bold]opscore dead-letters redrive task-...[/]"""
    with opts(ctx).client() as client:
        task = client.redrive(task_id)
    if opts(ctx).as_json:
        return emit_json(task)
    out.print(f"Re-drove task [bold]{task.task_id}[/]: {styled(task.status.value)}")
