"""The ``opscore`` command line (Typer), built on the SDK.

Exit codes scripts can rely on: 0 success; 1 the API answered an error; 2 bad usage;
3 Ops-Core could not be reached; 4 a waited-for run ended failed or cancelled; 5 waiting
timed out.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypedDict, TypeVar

import typer
import typer.core
from pydantic import BaseModel
from rich.console import Console
from rich.live import Live
from rich.table import Table

from .. import __version__
from ..client import APIConnectionError, APIError, OpsCoreClient

F = TypeVar("F", bound=Callable[..., Any])
EXIT_API, EXIT_USAGE, EXIT_CONNECT, EXIT_RUN_FAILED, EXIT_TIMEOUT = 1, 2, 3, 4, 5
STATUS_STYLE = {
    "completed": "green",
    "running": "cyan",
    "dispatched": "blue",
    "queued": "yellow",
    "pending": "dim",
    "failed": "red",
    "cancelled": "magenta",
    "waiting": "bold yellow",
    "skipped": "dim",
    "idle": "green",
    "active": "cyan",
    "busy": "cyan",
    "error": "red",
    "offline": "dim",
    "initializing": "yellow",
    "finished": "green",
}
LEVEL_STYLE = {
    "DEBUG": "dim",
    "INFO": "cyan",
    "WARNING": "yellow",
    "ERROR": "red",
    "CRITICAL": "bold red",
}


def _console(stderr: bool = False) -> Console:
    """Full width when piped (Rich would clip to 80 columns): a pipe has no width to keep to."""
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty()
    return Console(stderr=stderr, width=int(os.environ.get("COLUMNS") or 1000) if piped else None)


out = _console()
err = _console(stderr=True)


def _type_column_without_flags() -> None:
    """Typer's help prints a type next to every option, ``<bool>`` for a plain flag such as
    ``--wait`` or ``--help``, which takes no value: say nothing there instead."""
    option = typer.core.TyperOption
    shown = option.display_type_rich

    def display(self: typer.core.TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    option.display_type_rich = display  # type: ignore[method-assign]


_type_column_without_flags()

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Ops-Core: operate fleets of AI agents. Server URL and key come from --url/--api-key "
    "or OPSCORE_API_URL/OPSCORE_API_KEY.",
)
agents_app = typer.Typer(no_args_is_help=True, help="The agent registry.")
state_app = typer.Typer(no_args_is_help=True, help="Agents' lifecycle state.")
workflows_app = typer.Typer(no_args_is_help=True, help="Workflow templates.")
sessions_app = typer.Typer(no_args_is_help=True, help="Workflow runs and sessions.")
dead_app = typer.Typer(no_args_is_help=True, help="Tasks that exhausted their retries.")
tasks_app = typer.Typer(no_args_is_help=True, help="Task runs.")
app.add_typer(agents_app, name="agents")
app.add_typer(state_app, name="state")
app.add_typer(workflows_app, name="workflows")
app.add_typer(sessions_app, name="sessions")
app.add_typer(dead_app, name="dead-letters")
app.add_typer(tasks_app, name="tasks")


class Options:
    def __init__(self, url: str | None, api_key: str | None, as_json: bool, timeout: float) -> None:
        self.url, self.api_key, self.as_json, self.timeout = url, api_key, as_json, timeout

    def client(self) -> OpsCoreClient:
        return OpsCoreClient(self.url, self.api_key, timeout=self.timeout)


def _version(value: bool) -> None:
    if value:
        print(f"opscore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(envvar="OPSCORE_API_URL", help="Ops-Core base URL.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="OPSCORE_API_KEY", help="API key.", show_default=False)
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON for scripts (anywhere on the line).")
    ] = False,
    timeout: Annotated[float, typer.Option(help="HTTP timeout in seconds.")] = 10.0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", is_eager=True, callback=_version
        ),
    ] = False,
) -> None:
    """Ops-Core: operate fleets of AI agents."""
    ctx.obj = Options(url, api_key, as_json, timeout)


def api_command(fn: F) -> F:
    """Turn SDK errors into one line on stderr and a stable exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs.get("ctx", args[0] if args else None)
        options = getattr(ctx, "obj", None)
        as_json = isinstance(options, Options) and options.as_json
        try:
            return fn(*args, **kwargs)
        except APIError as exc:
            connect = isinstance(exc, APIConnectionError)
            if as_json:  # a script reads the error as it reads the answers
                body = {
                    "error": {
                        "status": exc.status_code,
                        "code": exc.code or ("CONNECTION_ERROR" if connect else "API_ERROR"),
                        "message": exc.message,
                        "requestId": exc.request_id,
                    }
                }
                print(json.dumps(body), file=sys.stderr)
            else:
                request = f" (request {exc.request_id})" if exc.request_id else ""
                text = exc.message if connect else f"{exc}{request}"
                err.print(f"[red]error:[/] {text}", highlight=False, soft_wrap=True)
            raise typer.Exit(EXIT_CONNECT if connect else EXIT_API) from None

    return wrapper  # type: ignore[return-value]


# --- output helpers ---------------------------------------------------------------------------
def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def emit_json(value: Any) -> None:
    print(json.dumps(_jsonable(value), indent=2, default=str))


def styled(status: str | None) -> str:
    if status is None:
        return "[dim]-[/]"
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def table(title: str, columns: Iterable[str], rows: Iterable[Iterable[Any]]) -> Table:
    """A table whose first column (an id) is never wrapped or cut, so it can be copied."""
    cells = [[str(cell) for cell in row] for row in rows]
    grid = Table(title=title, title_justify="left", header_style="bold")
    for i, column in enumerate(columns):
        if i == 0:
            widest = max((len(r[0]) for r in cells), default=len(column))
            grid.add_column(column, no_wrap=True, min_width=max(widest, len(column)))
        else:
            grid.add_column(column)
    for row in cells:
        grid.add_row(*row)
    return grid


def parse_json_option(value: str | None, name: str) -> dict[str, Any]:
    if not value:
        return {}
    try:
        data = json.loads(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint=name) from None
    if not isinstance(data, dict):
        raise typer.BadParameter("must be a JSON object", param_hint=name)
    return data


def opts(ctx: typer.Context) -> Options:
    options: Options = ctx.obj
    return options


# --- serve ------------------------------------------------------------------------------------
@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind [env: OPSCORE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env: OPSCORE_PORT].")] = None,
    storage_url: Annotated[
        str | None, typer.Option(help="memory:// [env: OPSCORE_STORAGE_URL].")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG..CRITICAL [env: OPSCORE_LOG_LEVEL].")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="json or text [env: OPSCORE_LOG_FORMAT].")
    ] = None,
    workflows_dir: Annotated[
        str | None, typer.Option(help="Templates to load [env: OPSCORE_WORKFLOWS_DIR].")
    ] = None,
    agentkit_api_url: Annotated[
        str | None, typer.Option(help="AgentKit base URL [env: AGENTKIT_API_URL].")
    ] = None,
) -> None:
    """Start the Ops-Core server. Every other setting comes from OPSCORE_* variables or .env.

    Without a configured key, one is generated for this run and printed.

    Example: [bold]opscore serve --port 8080 --log-format text[/]
    """
    try:
        from ..serve import run_server
    except ModuleNotFoundError as exc:  # the SDK alone: the service is an extra
        err.print(
            f"[red]error:[/] the server needs the 'server' extra ({exc.name} is missing): "
            "pip install 'opscore\\[server]'",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_USAGE) from None
    run_server(
        {
            "host": host,
            "port": port,
            "storage_url": storage_url,
            "log_level": log_level,
            "log_format": log_format,
            "workflows_dir": workflows_dir,
            "agentkit_api_url": agentkit_api_url,
        }
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


def hoist_json(argv: list[str]) -> list[str]:
    """``--json`` may come anywhere on the line (``opscore agents list --json``): it is an
    option of the root command, so it moves to the front (not past a ``--``)."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--json" not in argv[:end]:
        return argv
    return ["--json", *(a for i, a in enumerate(argv) if not (a == "--json" and i < end))]


# commands kept in modules of their own register on ``app`` when imported
from . import budgets, events, limits, runs, schedules, waits  # noqa: E402

__all__ = ["app", "budgets", "events", "limits", "main", "runs", "schedules", "waits"]


def main() -> None:
    try:
        app(args=hoist_json(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
