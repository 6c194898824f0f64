"""The workflow benchmark on every store, and what each store is asked per workflow.

    python -m bench.stores [--runs 2000] [--stores memory,sqlite,redis,postgresql] [--replicas 2]
        [--rounds 3] [--reports turn|agent] [--agents 8] [--celery] [--processes 2] [--rate 50]

For each store: one Ops-Core process (``opscore serve`` with ``OPSCORE_STORAGE_URL``) and the
fast-agent process (``--agents``, 8 no-op agents by default), the 3-step chain of
``bench.run`` triggered ``--runs`` times (64 in flight), and ``LATENCY_RUNS`` times one at a
time for the latency (p50, p90). On Redis the commands Ops-Core sent are read from ``INFO
commandstats`` before and after the throughput run and reported per workflow and per task; on
PostgreSQL the statements from ``pg_stat_database`` (xact_commit) per workflow. The store
server's own CPU per workflow (redis-server; PostgreSQL's postmaster and backends, from /proc)
is reported beside Ops-Core's: together they are a workflow's whole cost, as the worker's and
the broker's are a Celery chain's (``--celery``: ``bench.run.bench_celery``, run at the end of
each round; each line then says ``cpu_against_celery``, its whole cost over the chain's of its
round, and ``throughput_against_celery``, its workflows/s over that round's chains/s; and
``against_celery`` gives both per store, round by round, with their medians). With
``--replicas 2`` the shared stores run a second line with two Ops-Core processes on the same
store (runs triggered and agents' reports sent to each in turn; ``--reports agent``: each
agent's reports to one replica), and the CPU-seconds both spent per workflow (from /proc)
against one replica's; ``--rounds N`` runs every store's lines (and Celery) N times, one store
after the other within each round, and reports that ratio per round and its median
(``replica_cpu``). ``--processes N`` starts each Ops-Core on Redis and PostgreSQL as N
processes on its port (``opscore serve --processes``), its CPU counted over all of them.
``--rate R`` triggers the runs at R a second per replica instead of all at once (two replicas
at 2R), so that two replicas are compared with one at the same load each. A replica's CPU
per workflow falls as its load rises (bench/README.md): two replicas sharing the load that
saturates one run at half of it each, where a workflow costs each of them more.

Servers (redis-server, PostgreSQL's initdb/pg_ctl) are started here in temporary directories
on free loopback ports and stopped by PID. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .against_celery import against_celery, celery_medians, celery_round
from .common import (
    KEY,
    cpu_seconds,
    free_port,
    opscore_cmd,
    opscore_env,
    process,
    tree_cpu_seconds,
)
from .run import CHAIN, _latencies, _run_many, fast_agents_cmd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.storage_servers import postgres_missing  # noqa: E402

# workflows run one at a time for the p50 and p90 (after bench.run.WARM_UP left out): with 50,
# one run's p50 moved by several ms between runs of the same build
LATENCY_RUNS = 150


def redis_commands(port: int) -> dict[str, int]:
    """Calls per command from INFO commandstats."""
    import redis

    with redis.Redis(port=port) as r:
        stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def postgres_commits(url: str) -> int:
    """Transactions committed in the database so far (``pg_stat_database.xact_commit``;
    each statement outside a transaction is one). The counters reach the view within a
    second of a backend's commit, so read them after a pause."""
    import asyncpg

    async def read() -> int:
        conn = await asyncpg.connect(url)
        try:
            return int(
                await conn.fetchval(
                    "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
                )
            )
        finally:
            await conn.close()

    time.sleep(1.5)
    return asyncio.run(read())


class RoundTrips:
    """Counts the commands Ops-Core sends Redis (round trips) apart from the commands its
    scripts run inside Redis, with MONITOR in a thread (for a short counting pass only:
    MONITOR slows Redis down)."""

    def __init__(self, port: int) -> None:
        import threading

        import redis

        self.client = redis.Redis(port=port)
        self.sent = self.inside = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with self.client.monitor() as monitor:
            self._ready = True
            for command in monitor.listen():
                if self._stop.is_set():
                    return
                if command["client_type"] == "lua":
                    self.inside += 1
                elif "FLUSH" not in command["command"].upper():
                    self.sent += 1

    def __enter__(self) -> RoundTrips:
        self._ready = False
        self._thread.start()
        while not self._ready:
            time.sleep(0.01)
        time.sleep(0.2)
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)
        self._stop.set()
        self.client.ping()  # one more line, so the watcher sees the flag
        self._thread.join(timeout=5)


def _one_store(
    name: str,
    url: str,
    port: int | None,
    runs: int,
    replicas: int,
    reports: str = "turn",
    agents: int = 8,
    *,
    latency: bool = True,
    server_pid: int | None = None,
    processes: int = 1,
    rate: float | None = None,
) -> dict[str, Any]:
    """One line: ``runs`` workflows on ``replicas`` Ops-Cores sharing the store, at once, or
    ``rate`` a second per replica (so N replicas get N times one's load)."""
    offered = rate * replicas if rate is not None else None
    ports = [free_port() for _ in range(replicas)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    pa = free_port()
    with ExitStack() as stack:
        procs = [
            stack.enter_context(
                process(
                    opscore_cmd(),
                    env=opscore_env(
                        p,
                        OPSCORE_ACCESS_LOG="false",
                        OPSCORE_STORAGE_URL=url,
                        OPSCORE_PROCESSES=str(processes),
                    ),
                    ready_url=f"{u}/health",
                )
            )
            for p, u in zip(ports, urls, strict=True)
        ]
        with httpx.Client(base_url=urls[0], headers={"X-API-Key": KEY}) as c:
            r = c.post("/v1/opscore/workflows", json=CHAIN)
            assert r.status_code in (200, 201), r.text
        stack.enter_context(
            # reports spread over the replicas, as a load balancer would spread them
            process(
                fast_agents_cmd(urls, pa, agents, reports=reports),
                ready_url=f"http://127.0.0.1:{pa}/health",
            )
        )
        time.sleep(1)
        latencies = _latencies(urls[0], LATENCY_RUNS) if replicas == 1 and latency else []
        before = redis_commands(port) if name == "redis" and port else {}
        commits = postgres_commits(url) if name == "postgresql" else 0
        # with --processes, uvicorn's supervisor and the processes it spawned
        cpu_of = tree_cpu_seconds if processes > 1 else cpu_seconds
        cpu_before = sum(cpu_of(p.pid) for p in procs)
        store_before = tree_cpu_seconds(server_pid) if server_pid else 0.0
        duration = asyncio.run(_run_many(urls, runs, offered))
        cpu = sum(cpu_of(p.pid) for p in procs) - cpu_before
        store_cpu = tree_cpu_seconds(server_pid) - store_before if server_pid else None
        after = redis_commands(port) if name == "redis" and port else {}
        if name == "postgresql":
            # includes the driver's polls for completed runs and the telemetry channel
            commits = postgres_commits(url) - commits
        trips: RoundTrips | None = None
        if name == "redis" and port and replicas == 1:
            counted = 100
            with RoundTrips(port) as trips:
                asyncio.run(_run_many(urls, counted))
    out: dict[str, Any] = {
        "store": name,
        "replicas": replicas,
        **({"reports": reports} if replicas > 1 else {}),
        **({"processes": processes} if processes > 1 else {}),
        **({"offered_per_s": offered} if offered is not None else {}),
        "workflows_per_s": runs / duration,
        "cpu_ms_per_workflow": cpu / runs * 1000,
    }
    if store_cpu is not None:
        # the store server's own share (Redis; PostgreSQL's backends): with Ops-Core's,
        # the whole cost of a workflow, as Celery's worker and broker are of a chain
        out["store_cpu_ms_per_workflow"] = store_cpu / runs * 1000
    if latencies:
        out["p50_ms"] = statistics.median(latencies)
        out["p90_ms"] = statistics.quantiles(latencies, n=10)[-1]
    if name == "postgresql":
        out["postgres_statements_per_workflow"] = commits / runs
    if after:
        delta = {k: after[k] - before.get(k, 0) for k in after}
        delta.pop("info", None)
        total = sum(delta.values())
        out["redis_commands_per_workflow"] = total / runs
        out["redis_commands_per_task"] = total / runs / 3
        out["redis_top"] = dict(sorted(delta.items(), key=lambda kv: -kv[1])[:8])
    if trips is not None:
        # includes the driver polling the list of completed runs every 50 ms (a few commands)
        out["redis_round_trips_per_workflow"] = trips.sent / counted
        out["redis_commands_in_scripts_per_workflow"] = trips.inside / counted
    return out


SHARED = ("redis", "postgresql")


def available_stores(names: str) -> list[str]:
    """The stores of a comma-separated list whose servers this machine has."""
    return [
        name
        for name in names.split(",")
        if not (name == "redis" and shutil.which("redis-server") is None)
        and not (name == "postgresql" and postgres_missing())
    ]


@dataclass(frozen=True)
class StoreServer:
    """A store to benchmark: its URL, and for a server its port and process (PostgreSQL's
    postmaster, whose backends are its children); none for the stores inside Ops-Core."""

    url: str
    port: int | None = None
    pid: int | None = None


def _start_server(name: str, stack: ExitStack, directory: Path) -> StoreServer:
    """The store, its server started now and stopped with ``stack``."""
    if name == "memory":
        return StoreServer("memory://")
    if name == "sqlite":
        return StoreServer(f"sqlite:///{directory}/bench.db")
    from tests.storage_servers import PostgresServer, RedisServer

    server: RedisServer | PostgresServer
    if name == "redis":
        server = RedisServer(directory).start()
        stack.callback(server.stop)
    else:
        server = PostgresServer().start()
        stack.callback(server.remove)
    assert server.proc is not None
    return StoreServer(server.url, server.port, server.proc.pid)


def _start_store(name: str, stack: ExitStack, directory: Path) -> tuple[str, int | None]:
    """The store's URL (and server port), its server started now and stopped with ``stack``."""
    server = _start_server(name, stack, directory)
    return server.url, server.port


def each_store(names: str, measure: Callable[[str, str], dict[str, Any]]) -> dict[str, Any]:
    """``measure(name, url)`` for each store of ``names`` this machine has, each on a fresh
    server; prints a JSON line per store as it ends, then all of them."""
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in available_stores(names):
            with ExitStack() as stack:
                url, _ = _start_store(name, stack, Path(tempfile.mkdtemp(dir=tmp)))
                result[name] = measure(name, url)
            print(json.dumps({name: result[name]}), flush=True)
    print(json.dumps(result))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--stores", default="memory,sqlite,redis,postgresql")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="every store's lines (and Celery) this many times, stores in turn within a round: "
        "ratios (N replicas to one, a store to Celery) taken in each round, and their medians",
    )
    parser.add_argument(
        "--celery", action="store_true", help="the Celery chain at the end of each round"
    )
    parser.add_argument("--agents", type=int, default=8, help="the fast agents' fleet")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="each Ops-Core on Redis and PostgreSQL as this many processes on its port "
        "(opscore serve --processes; memory:// and SQLite stay one)",
    )
    parser.add_argument(
        "--reports",
        choices=("turn", "agent"),
        default="turn",
        help="with replicas: agents' reports to each replica in turn (a round-robin load "
        "balancer), or each agent's to one replica (one that hashes on the agent's id)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="workflows a second offered to each replica (N replicas get N times one's), "
        "instead of all at once: replicas compared at the same load each, below saturation",
    )
    args = parser.parse_args()
    names = available_stores(args.stores)
    results: list[dict[str, Any]] = []
    ratios: dict[str, list[float]] = {name: [] for name in names}
    celery_rounds: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        # rounds outermost, Celery at each round's end: every ratio is taken between lines
        # measured minutes apart at most, not between a store's rounds and one Celery run
        # after all of them (this shared machine's speed drifts by 10-30% over half an hour)
        for round_ in range(1, args.rounds + 1):
            lines_of_round: list[dict[str, Any]] = []
            for name in names:
                counts = [1, args.replicas] if args.replicas > 1 and name in SHARED else [1]
                lines = []
                for replicas in counts:
                    with ExitStack() as stack:  # a fresh store for each line
                        server = _start_server(name, stack, Path(tempfile.mkdtemp(dir=tmp)))
                        line = _one_store(
                            name,
                            server.url,
                            server.port,
                            args.runs,
                            replicas,
                            args.reports,
                            args.agents,
                            server_pid=server.pid,
                            processes=args.processes if name in SHARED else 1,
                            rate=args.rate,
                        )
                    line["round"] = round_
                    lines.append(line)
                    print(json.dumps(line), file=sys.stderr)
                lines_of_round += lines
                if len(lines) == 2:
                    one, more = (line["cpu_ms_per_workflow"] for line in lines)
                    ratios[name].append(more / one)
            if args.celery:
                celery = celery_round(round_)
                celery_rounds.append(celery)
                against_celery(lines_of_round, celery)
            results += lines_of_round
    # lines run minutes apart on a shared machine: a ratio taken within each round, and the
    # median of the rounds, is what the goal (within 15%) is read from
    replica_cpu = [
        {
            "store": name,
            "replicas": args.replicas,
            "ratios": [round(r, 3) for r in found],
            "median": round(statistics.median(found), 3),
        }
        for name, found in ratios.items()
        if found
    ]
    summary: dict[str, Any] = {"stores": results, "replica_cpu": replica_cpu}
    if args.celery:
        summary["celery"] = celery_rounds
        summary["against_celery"] = celery_medians(results)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
