"""CLI commands: the inspection log (``opscore logs``) and the purge of finished runs."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypedDict

import typer

from .common import (
    LEVEL_STYLE,
    api_command,
    app,
    emit_json,
    opts,
    out,
)


# --- logs -------------------------------------------------------------------------------------
def _log_line(record: dict[str, Any]) -> str:
    level = record.get("level", "INFO")
    context = " ".join(
        f"{k}={record[k]}"
        for k in ("state", "agentId", "sessionId", "taskId", "error")
        if record.get(k)
    )
    stamp = str(record.get("timestamp", ""))[11:23]
    style = LEVEL_STYLE.get(level, "white")
    return f"[dim]{stamp}[/] [{style}]{level:<7}[/] [bold]{record.get('logger', '')}[/] {record.get('message', '')} [dim]{context}[/]"


@app.command("purge")
@api_command
def purge(
    ctx: typer.Context,
    older_than: Annotated[
        float | None,
        typer.Option("--older-than", help="Seconds: finished runs that ended longer ago go."),
    ] = None,
    keep: Annotated[
        int | None, typer.Option(help="Keep only this many newest finished runs.")
    ] = None,
) -> None:
    """Remove finished runs (with their tasks and dead letters) now; needs an admin key.

    Without options the configured retention is applied at once. Running runs are never
    removed. Example: [bold]opscore purge --older-than 86400[/]
    """
    with opts(ctx).client() as client:
        result = client.purge(older_than_seconds=older_than, keep=keep)
    if opts(ctx).as_json:
        return emit_json(result)
    out.print(f"Removed {result.removed} finished runs")


class LogFilters(TypedDict):
    """The filters ``logs`` passes to both the listing and the live stream."""

    level: str | None
    logger: str | None
    agent_id: str | None
    session_id: str | None
    task_id: str | None
    text: str | None


@app.command("logs")
@api_command
def logs(
    ctx: typer.Context,
    level: Annotated[str | None, typer.Option(help="This level and above.")] = None,
    logger: Annotated[
        str | None, typer.Option(help="Logger name prefix, e.g. opscore.engine.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Only records about this agent.")] = None,
    session: Annotated[str | None, typer.Option(help="Only records about this session.")] = None,
    task: Annotated[str | None, typer.Option(help="Only records about this task.")] = None,
    grep: Annotated[str | None, typer.Option(help="Text in the message.")] = None,
    limit: Annotated[int, typer.Option(help="How many recent records.")] = 50,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep streaming new records.")
    ] = False,
) -> None:
    """Recent log records, oldest first; --follow streams new ones live (Ctrl-C stops).

    Example: [bold]opscore logs --level warning --follow[/]
    """
    filters = LogFilters(
        level=level, logger=logger, agent_id=agent, session_id=session, task_id=task, text=grep
    )
    as_json = opts(ctx).as_json
    with opts(ctx).client() as client:
        page = client.logs(order="desc", limit=limit, **filters)
        last_id = 0
        for record in reversed(page.items):
            last_id = max(last_id, int(record.get("id", 0)))
            _print_record(record, as_json)
        if not follow:
            return
        try:
            for record in client.stream_logs(last_event_id=last_id or None, **filters):
                _print_record(record, as_json)
        except KeyboardInterrupt:
            return


def _print_record(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(record, default=str), flush=True)
    else:
        out.print(_log_line(record), highlight=False, soft_wrap=True)
