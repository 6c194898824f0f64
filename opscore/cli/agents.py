"""CLI commands: the agent registry (``opscore agents``) and agents' state (``opscore state``)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from .common import (
    agents_app,
    api_command,
    emit_json,
    opts,
    out,
    parse_json_option,
    state_app,
    styled,
    table,
    when,
)


# --- agents -----------------------------------------------------------------------------------
@agents_app.command("register")
@api_command
def agents_register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Agent name.")],
    agent_id: Annotated[
        str | None, typer.Option("--id", help="Agent id (generated if omitted).")
    ] = None,
    capability: Annotated[
        list[str] | None, typer.Option("--capability", "-c", help="A capability; repeat for more.")
    ] = None,
    endpoint: Annotated[str | None, typer.Option(help="The agent's contactEndpoint URL.")] = None,
    version: Annotated[str, typer.Option(help="Agent version.")] = "0.0.0",
    max_concurrency: Annotated[int, typer.Option(help="Tasks it runs at once.")] = 1,
    metadata: Annotated[str | None, typer.Option(help="Metadata as a JSON object.")] = None,
    heartbeat: Annotated[
        float | None,
        typer.Option(help="Seconds between the agent's heartbeats (omit: Ops-Core probes it)."),
    ] = None,
) -> None:
    """Register an agent.

    Example: [bold]opscore agents register summarizer --id sum-1 -c summarize --endpoint http://127.0.0.1:8101/[/]
    """
    with opts(ctx).client() as client:
        agent = client.register_agent(
            name,
            agent_id=agent_id,
            capabilities=capability or [],
            contact_endpoint=endpoint,
            version=version,
            metadata=parse_json_option(metadata, "--metadata"),
            max_concurrency=max_concurrency,
            heartbeat_interval=heartbeat,
        )
    if opts(ctx).as_json:
        return emit_json(agent)
    out.print(f"Registered agent [bold]{agent.agent_id}[/] ({agent.agent_name})")


@agents_app.command("register-a2a")
@api_command
def agents_register_a2a(
    ctx: typer.Context,
    card_url: Annotated[str, typer.Argument(help="The agent card's URL, or the agent's base URL.")],
    agent_id: Annotated[
        str | None, typer.Option("--id", help="Agent id (from the card's name if omitted).")
    ] = None,
    capability: Annotated[
        list[str] | None,
        typer.Option("--capability", "-c", help="A capability besides its skills; repeatable."),
    ] = None,
    max_concurrency: Annotated[int, typer.Option(help="Tasks it runs at once.")] = 4,
) -> None:
    """Register an A2A agent by its agent card; its skills become capabilities.

    Example: [bold]opscore agents register-a2a http://10.0.0.9:41241 --id hello-a2a[/]
    """
    with opts(ctx).client() as client:
        agent = client.register_a2a_agent(
            card_url,
            agent_id=agent_id,
            capabilities=capability or [],
            max_concurrency=max_concurrency,
        )
    if opts(ctx).as_json:
        return emit_json(agent)
    card = agent.a2a
    via = f" via {card.protocol_binding} {card.protocol_version} at {card.url}" if card else ""
    out.print(
        f"Registered A2A agent [bold]{agent.agent_id}[/] ({agent.agent_name}){via}; "
        f"capabilities: {', '.join(agent.capabilities) or 'none'}"
    )


@agents_app.command("list")
@api_command
def agents_list(
    ctx: typer.Context,
    state: Annotated[str | None, typer.Option(help="Only agents in this state.")] = None,
    capability: Annotated[
        str | None, typer.Option(help="Only agents with this capability.")
    ] = None,
    limit: Annotated[int, typer.Option(help="Page size.")] = 50,
    offset: Annotated[int, typer.Option(help="Items to skip.")] = 0,
) -> None:
    """List agents with their state and when they last reported.

    Example: [bold]opscore agents list --state idle[/]
    """
    with opts(ctx).client() as client:
        page = client.list_agents(state=state, capability=capability, limit=limit, offset=offset)
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [
        (
            a.agent_id,
            a.agent_name,
            styled(a.state),
            ", ".join(a.capabilities),
            len(a.active_tasks),
            when(a.last_seen),
        )
        for a in page.items
    ]
    out.print(
        table(
            f"Agents ({page.total})",
            ["ID", "NAME", "STATE", "CAPABILITIES", "TASKS", "LAST SEEN"],
            rows,
        )
    )


@agents_app.command("show")
@api_command
def agents_show(
    ctx: typer.Context, agent_id: Annotated[str, typer.Argument(help="Agent id.")]
) -> None:
    """Show one agent. Example: [bold]opscore agents show sum-1[/]"""
    with opts(ctx).client() as client:
        agent = client.get_agent(agent_id)
    if opts(ctx).as_json:
        return emit_json(agent)
    rows = [
        ("id", agent.agent_id),
        ("name", agent.agent_name),
        ("version", agent.version),
        ("state", styled(agent.state)),
        ("state since", when(agent.state_timestamp)),
        ("last seen", when(agent.last_seen)),
        ("capabilities", ", ".join(agent.capabilities)),
        ("endpoint", agent.contact_endpoint or "-"),
        ("max concurrency", agent.max_concurrency),
        ("active tasks", ", ".join(agent.active_tasks) or "-"),
        ("source", agent.source),
    ]
    out.print(table(f"Agent {agent.agent_id}", ["FIELD", "VALUE"], rows))


@agents_app.command("deregister")
@api_command
def agents_deregister(
    ctx: typer.Context, agent_id: Annotated[str, typer.Argument(help="Agent id.")]
) -> None:
    """Remove an agent; its in-flight tasks are queued again. Example: [bold]opscore agents deregister sum-1[/]"""
    with opts(ctx).client() as client:
        agent = client.deregister_agent(agent_id)
    if opts(ctx).as_json:
        return emit_json(agent)
    out.print(f"Deregistered agent [bold]{agent.agent_id}[/]")


# --- state ------------------------------------------------------------------------------------
@state_app.command("set")
@api_command
def state_set(
    ctx: typer.Context,
    agent_id: Annotated[str, typer.Argument(help="Agent id.")],
    state: Annotated[str, typer.Argument(help="idle, active, error, ...")],
    details: Annotated[str | None, typer.Option(help="Details as a JSON object.")] = None,
) -> None:
    """Report a state for an agent, as AgentKit's SDK would.

    Example: [bold]opscore state set sum-1 idle[/]
    """
    with opts(ctx).client() as client:
        accepted = client.report_state(
            agent_id, state, details=parse_json_option(details, "--details")
        )
    if opts(ctx).as_json:
        return emit_json(accepted)
    out.print(f"{accepted.message}: {agent_id} is {styled(accepted.state)}")


@state_app.command("heartbeat")
@api_command
def state_heartbeat(
    ctx: typer.Context, agent_id: Annotated[str, typer.Argument(help="Agent id.")]
) -> None:
    """Tell Ops-Core an agent is alive, without changing its state.

    Example: [bold]opscore state heartbeat sum-1[/]
    """
    with opts(ctx).client() as client:
        beat = client.heartbeat(agent_id)
    if opts(ctx).as_json:
        return emit_json(beat)
    out.print(f"{agent_id} seen at {when(beat.last_seen)}; state {styled(beat.state)}")


@state_app.command("get")
@api_command
def state_get(
    ctx: typer.Context, agent_id: Annotated[str, typer.Argument(help="Agent id.")]
) -> None:
    """Current state of an agent. Example: [bold]opscore state get sum-1[/]"""
    with opts(ctx).client() as client:
        record = client.get_state(agent_id)
    if opts(ctx).as_json:
        return emit_json(record)
    if record.state is None or record.timestamp is None:
        out.print(f"{agent_id}: registered, no state reported yet")
        return None
    out.print(f"{agent_id}: {styled(record.state)} since {when(record.timestamp)}")


@state_app.command("history")
@api_command
def state_history(
    ctx: typer.Context,
    agent_id: Annotated[str, typer.Argument(help="Agent id.")],
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
) -> None:
    """State history, newest first. Example: [bold]opscore state history sum-1 --limit 5[/]"""
    with opts(ctx).client() as client:
        page = client.state_history(agent_id, limit=limit)
    if opts(ctx).as_json:
        return emit_json(page)
    rows = [
        (when(r.timestamp), styled(r.state), r.reason or json.dumps(r.details)) for r in page.items
    ]
    out.print(
        table(f"State history of {agent_id} ({page.total})", ["TIME", "STATE", "DETAILS"], rows)
    )
