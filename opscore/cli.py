"""The ``opscore`` command line (Typer)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, help="Ops-Core: operate fleets of AI agents.")


@app.callback()
def _root() -> None:
    """Ops-Core: operate fleets of AI agents."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind [env: OPSCORE_HOST].")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env: OPSCORE_PORT].")] = None,
    storage_url: Annotated[
        str | None, typer.Option(help="memory:// ... [env: OPSCORE_STORAGE_URL].")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG..CRITICAL [env: OPSCORE_LOG_LEVEL].")
    ] = None,
    log_format: Annotated[
        str | None, typer.Option(help="json or text [env: OPSCORE_LOG_FORMAT].")
    ] = None,
    workflows_dir: Annotated[
        str | None, typer.Option(help="Template directory [env: OPSCORE_WORKFLOWS_DIR].")
    ] = None,
) -> None:
    """Start the Ops-Core server. Without a configured key, one is generated and printed."""
    from .serve import run_server

    run_server(
        {
            "host": host,
            "port": port,
            "storage_url": storage_url,
            "log_level": log_level,
            "log_format": log_format,
            "workflows_dir": workflows_dir,
        }
    )


def main() -> None:
    app()
