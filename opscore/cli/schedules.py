"""CLI commands for schedules: a template run on a cron expression or an interval."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer

from ..client import OpsCoreClient
from .common import api_command, app, emit_json, opts, out, parse_json_option, table, when

schedules_app = typer.Typer(no_args_is_help=True, help="Templates run on a cron or an interval.")
app.add_typer(schedules_app, name="schedules")
ScheduleId = Annotated[str, typer.Argument(help="The schedule's id.")]
Cron = Annotated[str | None, typer.Option(help="Five cron fields, or @hourly, @daily...")]
Every = Annotated[float | None, typer.Option("--every", help="Or every N seconds.")]
Zone = Annotated[str | None, typer.Option("--tz", help="IANA time zone the cron reads in.")]
Payload = Annotated[str | None, typer.Option(help="JSON object: each run's input.")]
Overlap = Annotated[str | None, typer.Option(help="skip, queue_one or allow.")]
CatchUp = Annotated[str | None, typer.Option(help="one, skip or all.")]


def _show(schedule: Any) -> None:
    state = "paused" if schedule.paused else f"next {when(schedule.next_fire_at)} UTC"
    rule = schedule.cron or f"every {schedule.interval_seconds:g}s"
    out.print(
        f"[bold]{schedule.schedule_id}[/] runs {schedule.workflow_id}: {rule} "
        f"({schedule.description}, {schedule.timezone}); {state}",
        soft_wrap=True,
    )


@schedules_app.command("create")
@api_command
def create(
    ctx: typer.Context,
    workflow_id: Annotated[str, typer.Argument(help="The template to run.")],
    cron: Cron = None,
    every: Every = None,
    tz: Zone = None,
    payload: Payload = None,
    schedule_id: Annotated[str | None, typer.Option("--id", help="Its id (generated).")] = None,
    overlap: Overlap = None,
    catch_up: CatchUp = None,
) -> None:
    """Schedule a template. Example: [bold]opscore schedules create digest --cron "0 9 * * mon-fri" --tz Europe/Paris[/]"""
    with opts(ctx).client() as client:
        schedule = client.create_schedule(
            workflow_id,
            cron=cron,
            interval_seconds=every,
            timezone=tz,
            payload=parse_json_option(payload, "--payload") if payload else None,
            schedule_id=schedule_id,
            overlap=overlap,  # type: ignore[arg-type]
            catch_up=catch_up,  # type: ignore[arg-type]
        )
    if opts(ctx).as_json:
        return emit_json(schedule)
    _show(schedule)


@schedules_app.command("list")
@api_command
def list_(ctx: typer.Context, limit: Annotated[int, typer.Option(help="Page size.")] = 50) -> None:
    """Schedules. Example: [bold]opscore schedules list[/]"""
    with opts(ctx).client() as client:
        page = client.list_schedules(limit=limit)
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [
        (
            s.schedule_id,
            s.workflow_id,
            s.cron or f"every {s.interval_seconds:g}s",
            "paused" if s.paused else when(s.next_fire_at),
            f"{s.fired}/{s.skipped}",
        )
        for s in page.items
    ]
    columns = ["ID", "WORKFLOW", "WHEN", "NEXT (UTC)", "RUN/SKIPPED"]
    out.print(table(f"Schedules ({page.total})", columns, rows))


def _one(ctx: typer.Context, act: Callable[[OpsCoreClient], Any]) -> None:
    """Call the API for one schedule and print it (or its JSON)."""
    with opts(ctx).client() as client:
        schedule = act(client)
    if opts(ctx).as_json:
        return emit_json(schedule)
    _show(schedule)


@schedules_app.command("show")
@api_command
def show(ctx: typer.Context, schedule_id: ScheduleId) -> None:
    """A schedule. Example: [bold]opscore schedules show digest-weekdays[/]"""
    _one(ctx, lambda client: client.get_schedule(schedule_id))


@schedules_app.command("update")
@api_command
def update(
    ctx: typer.Context,
    schedule_id: ScheduleId,
    cron: Cron = None,
    every: Every = None,
    tz: Zone = None,
    payload: Payload = None,
    overlap: Overlap = None,
    catch_up: CatchUp = None,
) -> None:
    """Change a schedule. Example: [bold]opscore schedules update digest-weekdays --cron "30 8 * * *"[/]"""
    changes = {
        "cron": cron,
        "interval_seconds": every,
        "timezone": tz,
        "payload": parse_json_option(payload, "--payload") if payload else None,
        "overlap": overlap,
        "catch_up": catch_up,
    }
    _one(ctx, lambda client: client.update_schedule(schedule_id, **changes))


@schedules_app.command("pause")
@api_command
def pause(ctx: typer.Context, schedule_id: ScheduleId) -> None:
    """Pause a schedule. Example: [bold]opscore schedules pause digest-weekdays[/]"""
    _one(ctx, lambda client: client.pause_schedule(schedule_id))


@schedules_app.command("resume")
@api_command
def resume(ctx: typer.Context, schedule_id: ScheduleId) -> None:
    """Resume a paused schedule from its next tick. Example: [bold]opscore schedules resume digest-weekdays[/]"""
    _one(ctx, lambda client: client.resume_schedule(schedule_id))


@schedules_app.command("trigger")
@api_command
def trigger(ctx: typer.Context, schedule_id: ScheduleId) -> None:
    """Run a schedule's template now. Example: [bold]opscore schedules trigger digest-weekdays[/]"""
    with opts(ctx).client() as client:
        accepted = client.trigger_schedule(schedule_id)
    if opts(ctx).as_json:
        return emit_json(accepted)
    out.print(f"Started session [bold]{accepted.session_id}[/]")


@schedules_app.command("delete")
@api_command
def delete(ctx: typer.Context, schedule_id: ScheduleId) -> None:
    """Delete a schedule. Example: [bold]opscore schedules delete digest-weekdays[/]"""
    with opts(ctx).client() as client:
        client.delete_schedule(schedule_id)
    if opts(ctx).as_json:
        return emit_json({"deleted": schedule_id})
    out.print(f"Deleted schedule [bold]{schedule_id}[/]")
