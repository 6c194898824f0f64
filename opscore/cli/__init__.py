"""The ``opscore`` command line (Typer), built on the SDK.

Exit codes scripts can rely on: 0 success; 1 the API answered an error; 2 bad usage;
3 Ops-Core could not be reached; 4 a waited-for run ended failed or cancelled; 5 waiting
timed out.

``common`` holds the app, its groups and helpers; each other module registers the commands
of one part of the API on it when imported (below).
"""

from __future__ import annotations

import sys

# the order of registration is the order of ``opscore --help``: the server, a run, what
# operators use most, then the groups
# isort: off
from . import serve, sessions, logs, budgets, waits
from . import agents, workflows, events, limits, runs, schedules

# isort: on
from .common import app
from .sessions import waiting_for

__all__ = [
    "agents",
    "app",
    "budgets",
    "events",
    "hoist_json",
    "limits",
    "logs",
    "main",
    "runs",
    "schedules",
    "serve",
    "sessions",
    "waiting_for",
    "waits",
    "workflows",
]


def hoist_json(argv: list[str]) -> list[str]:
    """``--json`` may come anywhere on the line (``opscore agents list --json``): it is an
    option of the root command, so it moves to the front (not past a ``--``)."""
    end = argv.index("--") if "--" in argv else len(argv)
    if "--json" not in argv[:end]:
        return argv
    return ["--json", *(a for i, a in enumerate(argv) if not (a == "--json" and i < end))]


def main() -> None:
    try:
        app(args=hoist_json(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
