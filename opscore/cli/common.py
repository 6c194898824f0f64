"""What every ``opscore`` command shares: the Typer app and its groups, the global options,
the error handling that gives scripts stable exit codes, and the output helpers."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
import typer.core
from pydantic import BaseModel
from rich.console import Console
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
