"""``opscore serve``: the server, started from the command line."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import (
    EXIT_USAGE,
    app,
    err,
)


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
    processes: Annotated[
        int | None,
        typer.Option(
            help="Processes on the port, one per core; Redis or PostgreSQL only "
            "[env: OPSCORE_PROCESSES]."
        ),
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
            "processes": processes,
        }
    )
