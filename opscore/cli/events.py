"""CLI commands for events out: subscriptions, their delivery logs, re-delivery, tests."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import api_command, app, emit_json, opts, out, styled, table, when

subscriptions_app = typer.Typer(no_args_is_help=True, help="Events out: webhook subscriptions.")
app.add_typer(subscriptions_app, name="subscriptions")
SubscriptionId = Annotated[str, typer.Argument(help="The subscription's id.")]


@subscriptions_app.command("create")
@api_command
def create(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="Where to POST the events.")],
    event: Annotated[
        list[str], typer.Option("--event", "-e", help="An event type; repeat for more.")
    ],
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    secret: Annotated[
        str | None, typer.Option(help="Your own signing secret (16+ characters).")
    ] = None,
) -> None:
    """Subscribe a URL to events. Example: [bold]opscore subscriptions create https://hooks.example.com/x -e run.failed[/]"""
    with opts(ctx).client() as client:
        created = client.create_subscription(url, event, description=description, secret=secret)
    if opts(ctx).as_json:
        return emit_json(created)
    out.print(
        f"Subscribed [bold]{created.subscription_id}[/] to {', '.join(created.events)}\n"
        f"Secret (shown once): {created.secret}",
        soft_wrap=True,
    )


@subscriptions_app.command("list")
@api_command
def list_(ctx: typer.Context, limit: Annotated[int, typer.Option(help="Page size.")] = 50) -> None:
    """Subscriptions. Example: [bold]opscore subscriptions list[/]"""
    with opts(ctx).client() as client:
        page = client.list_subscriptions(limit=limit)
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [
        (s.subscription_id, s.url, ", ".join(s.events), "yes" if s.active else "paused")
        for s in page.items
    ]
    out.print(table(f"Subscriptions ({page.total})", ["ID", "URL", "EVENTS", "ACTIVE"], rows))


@subscriptions_app.command("deliveries")
@api_command
def deliveries(
    ctx: typer.Context,
    subscription_id: SubscriptionId,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
) -> None:
    """A subscription's delivery log, newest first. Example: [bold]opscore subscriptions deliveries sub-...[/]"""
    with opts(ctx).client() as client:
        page = client.list_deliveries(subscription_id, limit=limit)
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [
        (
            d.delivery_id,
            d.event.type,
            styled({"delivered": "completed", "pending": "queued"}.get(d.status, d.status)),
            d.attempts,
            d.last_status_code or "-",
            when(d.next_attempt_at),
            d.last_error or "",
        )
        for d in page.items
    ]
    out.print(
        table(
            f"Deliveries of {subscription_id} ({page.total})",
            ["DELIVERY", "EVENT", "STATUS", "ATTEMPTS", "CODE", "NEXT", "ERROR"],
            rows,
        )
    )


@subscriptions_app.command("redeliver")
@api_command
def redeliver(
    ctx: typer.Context,
    subscription_id: SubscriptionId,
    delivery_id: Annotated[str, typer.Argument(help="The delivery's id.")],
) -> None:
    """Send a delivery again now. Example: [bold]opscore subscriptions redeliver sub-... sub-...:0001[/]"""
    with opts(ctx).client() as client:
        delivery = client.redeliver(subscription_id, delivery_id)
    if opts(ctx).as_json:
        return emit_json(delivery)
    out.print(f"Re-delivering [bold]{delivery.delivery_id}[/] ({delivery.event.type})")


def _set_active(ctx: typer.Context, subscription_id: str, active: bool) -> None:
    with opts(ctx).client() as client:
        subscription = client.update_subscription(subscription_id, active=active)
    if opts(ctx).as_json:
        return emit_json(subscription)
    out.print(f"{'Resumed' if active else 'Paused'} [bold]{subscription.subscription_id}[/]")


@subscriptions_app.command("pause")
@api_command
def pause(ctx: typer.Context, subscription_id: SubscriptionId) -> None:
    """Stop sending events to a subscription. Example: [bold]opscore subscriptions pause sub-...[/]"""
    _set_active(ctx, subscription_id, False)


@subscriptions_app.command("resume")
@api_command
def resume(ctx: typer.Context, subscription_id: SubscriptionId) -> None:
    """Send events to a paused subscription again. Example: [bold]opscore subscriptions resume sub-...[/]"""
    _set_active(ctx, subscription_id, True)


@subscriptions_app.command("delete")
@api_command
def delete(ctx: typer.Context, subscription_id: SubscriptionId) -> None:
    """Delete a subscription. Example: [bold]opscore subscriptions delete sub-...[/]"""
    with opts(ctx).client() as client:
        client.delete_subscription(subscription_id)
    if opts(ctx).as_json:
        return emit_json({"deleted": subscription_id})
    out.print(f"Deleted [bold]{subscription_id}[/]")


@subscriptions_app.command("ping")
@api_command
def ping(ctx: typer.Context, subscription_id: SubscriptionId) -> None:
    """Send a test event. Example: [bold]opscore subscriptions ping sub-...[/]"""
    with opts(ctx).client() as client:
        delivery = client.ping_subscription(subscription_id)
    if opts(ctx).as_json:
        return emit_json(delivery)
    out.print(f"Queued ping [bold]{delivery.delivery_id}[/]")
