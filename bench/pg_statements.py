"""Where PostgreSQL's own time goes, statement by statement, in the workflow benchmark.

    python -m bench.pg_statements [--runs 1000] [--replicas 1] [--reports turn|agent]

A throwaway cluster (``tests.storage_servers.PostgresServer``) logs the duration of every
statement (``log_min_duration_statement = 0``) while ``bench.stores`` runs its throughput
line on it: ``--runs`` three-step workflows over ``--replicas`` Ops-Core processes (no
latency runs). The server's log is then read: per statement (its first 100 characters,
whitespace folded), how many per workflow and the server's milliseconds per workflow, bind
and execute apart (asyncpg prepares each statement once per connection). Prints one JSON
line, statements with the most server time first.

With ``--inside``, the server also loads ``pg_stat_statements`` (``track = all``,
``track_planning = on``) and the answer has ``inside``: every statement it counted, those run
inside Ops-Core's functions (``opscore/storage/postgres/functions.py``) included, which the
log shows only as the function's call; per statement its calls, planning and execution
milliseconds per workflow, and how many plans were made (a statement planned at every call
has as many plans as calls).

Server time only: what each round trip costs the client (asyncpg, the event loop, the
Python around it) is not in it, and ``bench.stores`` measures that as the Ops-Core
processes' CPU per workflow. Logging every statement slows the server, so the speed of this
run is not a figure to quote; the counts are. Statements of the telemetry channel and of the
driver's polls for completed runs are counted too: they are part of a workflow's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections import defaultdict
from typing import Any

from .common import ROOT
from .stores import _one_store, available_stores

sys.path.insert(0, str(ROOT))
from tests.storage_servers import PostgresServer

SHOWN = 100  # characters of a statement that name it
_ENTRY = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
_DURATION = re.compile(r"duration: ([\d.]+) ms\s+(parse|bind|execute|statement)[^:]*:\s*(.*)", re.S)


def log_entries(text: str) -> list[str]:
    """The log's entries, each with its continuation lines joined (a statement spans
    several lines; the lines after the first are indented)."""
    entries: list[str] = []
    for line in text.splitlines():
        if _ENTRY.match(line) or not entries:
            entries.append(line)
        else:
            entries[-1] += " " + line.strip()
    return entries


def statement_times(text: str, workflows: int) -> dict[str, Any]:
    """Per statement of the log ``text``: count and server milliseconds per workflow, by
    phase; and the totals per workflow."""
    by_statement: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    totals: dict[str, float] = defaultdict(float)
    for entry in log_entries(text):
        found = _DURATION.search(entry)
        if found is None:
            continue
        ms, phase, sql = float(found.group(1)), found.group(2), " ".join(found.group(3).split())
        name = sql[:SHOWN]
        by_statement[name][f"{phase}_ms"] += ms / workflows
        if phase in ("execute", "statement"):
            by_statement[name]["count"] += 1 / workflows
        totals[f"{phase}_ms"] += ms / workflows
    order = sorted(
        by_statement, key=lambda n: -(by_statement[n]["execute_ms"] + by_statement[n]["bind_ms"])
    )
    rows = [
        {"statement": name, **{k: round(v, 4) for k, v in sorted(by_statement[name].items())}}
        for name in order
    ]
    return {"per_workflow": {k: round(v, 4) for k, v in totals.items()}, "statements": rows}


async def _log_every_statement(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ALTER SYSTEM SET log_min_duration_statement = 0")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def _track_inside(server: PostgresServer) -> None:
    """Load ``pg_stat_statements`` (a restart) and count every statement, nested ones too."""
    import asyncpg

    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
    finally:
        await conn.close()
    server.stop()
    server.resume()
    conn = await asyncpg.connect(server.url)
    try:
        await conn.execute("CREATE EXTENSION pg_stat_statements")
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
        await conn.execute("ALTER SYSTEM SET pg_stat_statements.track_planning = on")
        await conn.execute("SELECT pg_reload_conf()")
        await conn.execute("SELECT pg_stat_statements_reset()")
    finally:
        await conn.close()


async def _inside(url: str, workflows: int) -> list[dict[str, Any]]:
    """``pg_stat_statements``' rows, most time first, per workflow."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT query, calls, plans, total_plan_time, total_exec_time, toplevel "
            "FROM pg_stat_statements ORDER BY total_plan_time + total_exec_time DESC LIMIT 40"
        )
    finally:
        await conn.close()
    return [
        {
            "statement": " ".join(r["query"].split())[:SHOWN],
            "inside_a_function": not r["toplevel"],
            "count": round(r["calls"] / workflows, 4),
            "plans": r["plans"],
            "plan_ms": round(r["total_plan_time"] / workflows, 4),
            "execute_ms": round(r["total_exec_time"] / workflows, 4),
        }
        for r in rows
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--reports", choices=("turn", "agent"), default="turn")
    parser.add_argument(
        "--inside",
        action="store_true",
        help="also count statements with pg_stat_statements, those inside functions too",
    )
    args = parser.parse_args()
    if not available_stores("postgresql"):
        sys.exit("PostgreSQL is not installed (apt-get install postgresql)")
    server = PostgresServer().start()
    inside: list[dict[str, Any]] = []
    try:
        if args.inside:
            asyncio.run(_track_inside(server))
        asyncio.run(_log_every_statement(server.url))
        line = _one_store(
            "postgresql",
            server.url,
            server.port,
            args.runs,
            args.replicas,
            args.reports,
            latency=False,
        )
        log = (server.dir / "server.log").read_text(errors="replace")
        if args.inside:
            inside = asyncio.run(_inside(server.url, args.runs))
    finally:
        server.remove()
    extra = {"inside": inside} if args.inside else {}
    print(json.dumps({"run": line, **statement_times(log, args.runs), **extra}))


if __name__ == "__main__":
    main()
