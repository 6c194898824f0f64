"""``make bench``: every benchmark in one run, on 127.0.0.1, against processes it starts and stops.

Prints a table and writes bench/results/latest.json. Each figure is the median of several runs
with its spread (min..max); each comparison is a ratio of runs made in this same invocation.
Load comes from wrk (a separate process), never from the process being measured.

Environment: BENCH_QUICK=1 for a short smoke run; BENCH_SOAK_SECONDS (default 300);
BENCH_ONLY=ingest,workflows,celery,stores,scale,memory,probes,stall,outage,hostile,soak to run a
subset.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from .common import (
    BENCH,
    KEEPALIVE,
    KEY,
    free_port,
    opscore_cmd,
    opscore_env,
    process,
    rss_mb,
    summary,
    tree_cpu_seconds,
    wrk,
)

QUICK = os.environ.get("BENCH_QUICK") == "1"
REPS = 2 if QUICK else 3
SECONDS = 4 if QUICK else 10
SCALE_REPS = 3 if QUICK else 5
ONLY = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
# Each wrk run gets later timestamps than the last (reports older than an agent's current state
# are refused), and all of them in the past: Ops-Core refuses reports from the future.
_stamp = [int(time.time()) - 3 * 365 * 86400]


def next_base() -> str:
    _stamp[0] += 100_000  # a run sends at most a few million reports: microseconds apart
    return str(_stamp[0])


def wanted(name: str) -> bool:
    return not ONLY or name in ONLY


def register(url: str, count: int, prefix: str = "agent-") -> None:
    async def go() -> None:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as c:
            sem = asyncio.Semaphore(32)

            async def one(i: int) -> None:
                async with sem:
                    await c.post(
                        "/v1/opscore/agents", json={"agentId": f"{prefix}{i}", "agentName": "a"}
                    )

            await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(go())


# --- state ingest -----------------------------------------------------------------------------
def bench_ingest() -> dict[str, Any]:
    """Ops-Core's state route (defaults: auth, JSON access log, memory store) vs bare FastAPI."""
    po, pb = free_port(), free_port()
    uvicorn_baseline = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.baseline_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(pb),
        "--no-access-log",
        "--log-level",
        "warning",
        "--loop",  # the same loop as `opscore serve` (OPSCORE_EVENT_LOOP, asyncio by default)
        "asyncio",
    ]
    script = BENCH / "state_report.lua"
    results: dict[str, Any] = {}
    with (
        process(opscore_cmd(), env=opscore_env(po), ready_url=f"http://127.0.0.1:{po}/health"),
        process(uvicorn_baseline, ready_url=f"http://127.0.0.1:{pb}/docs"),
    ):
        register(f"http://127.0.0.1:{po}", 1000)
        for port in (pb, po):  # warm-up
            wrk(
                f"http://127.0.0.1:{port}",
                script,
                [KEY, "1000", next_base(), "2"],
                connections=64,
                seconds=2,
            )
        for connections in (64, 256):
            runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "opscore": []}
            for _ in range(REPS):
                for name, port in (("baseline", pb), ("opscore", po)):
                    runs[name].append(
                        wrk(
                            f"http://127.0.0.1:{port}",
                            script,
                            [KEY, "1000", next_base(), "2"],
                            connections=connections,
                            seconds=SECONDS,
                        )
                    )
            ratios = [
                o["rps"] / b["rps"] for o, b in zip(runs["opscore"], runs["baseline"], strict=True)
            ]
            results[str(connections)] = {
                name: {
                    "rps": summary([r["rps"] for r in rs]),
                    "p99_ms": summary([r["p99_ms"] for r in rs]),
                    "p50_ms": summary([r["p50_ms"] for r in rs]),
                    "errors": sum(r["errors"] for r in rs),
                }
                for name, rs in runs.items()
            }
            results[str(connections)]["ratio"] = summary(ratios)
    return results


# --- workflows --------------------------------------------------------------------------------
CHAIN = {
    "id": "chain3",
    "name": "no-op chain",
    "version": "1",
    "tasks": [
        {"taskId": "a", "agentCapability": "noop", "nextTaskId": "b"},
        {"taskId": "b", "agentCapability": "noop", "nextTaskId": "c"},
        {"taskId": "c", "agentCapability": "noop"},
    ],
}


async def _runs_in(session: aiohttp.ClientSession, url: str, status: str) -> int:
    """How many runs the store holds in ``status``."""
    async with session.get(
        f"{url}/v1/opscore/sessions", params={"status": status, "limit": "1"}
    ) as r:
        return int((await r.json())["total"])


async def _run_many(url: str | list[str], count: int, rate: float | None = None) -> float:
    """Trigger ``count`` runs at once (64 requests in flight per Ops-Core process; with
    several URLs, replicas of one store, the runs go to each in turn), or ``rate`` a second
    (in all) when it is given, and wait until all completed, counted once in the store they
    share.

    aiohttp, not httpx: this driver shares the 2 cores with what it measures."""
    urls = [url] if isinstance(url, str) else url
    headers = {"X-API-Key": KEY, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(
        headers=headers,
        connector=aiohttp.TCPConnector(limit=64 * len(urls), keepalive_timeout=KEEPALIVE),
    ) as session:
        before = await _runs_in(session, urls[0], "completed")
        failed_before = await _runs_in(session, urls[0], "failed")
        limits = {u: asyncio.Semaphore(64) for u in urls}

        async def one(i: int) -> None:
            if rate is not None:  # the i-th run's time, whenever the others were answered
                await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            target = urls[i % len(urls)]
            async with (
                limits[target],
                session.post(f"{target}/v1/opscore/workflows/chain3/runs", data="{}") as r,
            ):
                r.raise_for_status()
                await r.read()

        start = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(count)))
        polls = 0
        while await _runs_in(session, urls[0], "completed") - before < count:
            polls += 1
            # a run that failed never completes: say so rather than wait for ever (once a
            # second: these polls are load on what is measured, and counted in its figures)
            if polls % 20 == 0:
                failed = await _runs_in(session, urls[0], "failed") - failed_before
                if failed:
                    raise RuntimeError(f"{failed} runs failed (are the agents up?)")
            await asyncio.sleep(0.05)
        return time.perf_counter() - start


# The driver's first look at a run it started, this long after: the latency is read from the
# service's own timestamps, and a poll that lands mid-run competes with the run for the
# service's one event loop. Polling from the start added 1.7-2.7 ms to a 7-14 ms p50
# (memory, SQLite, Redis; alternated run by run in one process, 150 runs each).
FIRST_LOOK = 0.05
# runs before the sample: the first ones after start-up are slower (connections, caches)
WARM_UP = 10
FLEET = 8  # fast agents behind the runs made one at a time (bench.latency --agents)


def completed_run(client: httpx.Client, timeout: float = 30) -> dict[str, Any]:
    """Start one run of the chain and return its session detail once it completed."""
    sid = client.post("/v1/opscore/workflows/chain3/runs", json={}).json()["sessionId"]
    time.sleep(FIRST_LOOK)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session: dict[str, Any] = client.get(f"/v1/opscore/sessions/{sid}").json()
        if session["status"] == "completed":
            return session
        time.sleep(0.01)
    raise RuntimeError(f"run {sid} did not complete within {timeout:.0f} s")


def workflows_one_at_a_time(
    stack: ExitStack,
    url: str,
    runs: int,
    *,
    fleet: int = FLEET,
    command: list[str] | None = None,
    **env: str,
) -> tuple[subprocess.Popen[bytes], Iterator[dict[str, Any]]]:
    """Ops-Core on the store at ``url`` (``command``, ``opscore serve`` unless given, with
    ``env`` added to its environment), the chain and ``fleet`` fast agents, all in ``stack``;
    and the sessions of ``runs`` runs of the chain, each started once the one before completed,
    after ``WARM_UP`` runs left out (``bench.latency``, ``bench.loop_time``)."""
    port, agents_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    environment = opscore_env(port, OPSCORE_ACCESS_LOG="false", OPSCORE_STORAGE_URL=url, **env)
    server = stack.enter_context(
        process(command or opscore_cmd(), env=environment, ready_url=f"{base}/health")
    )
    client = stack.enter_context(
        httpx.Client(base_url=base, headers={"X-API-Key": KEY}, timeout=30)
    )
    client.post("/v1/opscore/workflows", json=CHAIN).raise_for_status()
    agents = fast_agents_cmd(base, agents_port, fleet)
    ready = f"http://127.0.0.1:{agents_port}/health"  # once every agent is registered
    stack.enter_context(process(agents, ready_url=ready, ready_within=30 + fleet / 50))
    time.sleep(1)

    return server, completed_runs(client, runs)


def completed_runs(client: httpx.Client, count: int) -> Iterator[dict[str, Any]]:
    """The sessions of ``count`` runs of the chain, each started once the one before
    completed, after ``WARM_UP`` runs left out."""
    for run in range(WARM_UP + count):
        session = completed_run(client)
        if run >= WARM_UP:
            yield session


def _latencies(url: str, count: int) -> list[float]:
    """Trigger -> completed of one workflow at a time on an idle service, by the server's
    clock, after ``WARM_UP`` runs left out."""
    out = []
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30) as c:
        for s in completed_runs(c, count):
            created = datetime.fromisoformat(s["createdAt"])
            finished = datetime.fromisoformat(s["finishedAt"])
            out.append((finished - created).total_seconds() * 1000)
    return out


def fast_agents_cmd(
    opscore_url: str | list[str], port: int, count: int = 8, *, reports: str = "turn"
) -> list[str]:
    """The separate fast-agent process (bench/fast_agents.py) serving ``count`` agents; with
    several Ops-Core URLs (replicas), their reports go to each in turn (``reports="turn"``)
    or each agent's to one of them (``"agent"``)."""
    urls = [opscore_url] if isinstance(opscore_url, str) else opscore_url
    return [
        sys.executable,
        "-m",
        "bench.fast_agents",
        *(arg for url in urls for arg in ("--opscore", url)),
        "--key",
        KEY,
        "--agents",
        str(count),
        "--port",
        str(port),
        "--reports",
        reports,
    ]


def bench_workflows() -> dict[str, Any]:
    po, pa = free_port(), free_port()
    url = f"http://127.0.0.1:{po}"
    env = opscore_env(po, OPSCORE_ACCESS_LOG="false")
    agents = fast_agents_cmd(url, pa)
    count = 500 if QUICK else 2000
    with process(opscore_cmd(), env=env, ready_url=f"{url}/health"):
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}) as c:
            c.post("/v1/opscore/workflows", json=CHAIN).raise_for_status()
        with process(agents, ready_url=f"http://127.0.0.1:{pa}/health"):
            time.sleep(1)
            latencies = _latencies(url, 30 if QUICK else 100)
            durations = [asyncio.run(_run_many(url, count)) for _ in range(REPS)]
    rates = [count / d for d in durations]
    return {
        "workflows": count,
        "workflows_per_s": summary(rates),
        "tasks_per_s": summary([3 * r for r in rates]),
        "latency_ms": {
            "p50": statistics.median(latencies),
            "p99": statistics.quantiles(latencies, n=100)[98],
            "runs": len(latencies),
        },
    }


def bench_celery() -> dict[str, Any]:
    """The same 3-task no-op chain on Celery 5, Redis broker, one worker, concurrency 2."""
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server not installed"}
    try:
        import celery  # noqa: F401
    except ImportError:
        return {"skipped": "celery not installed (pip install -r bench/requirements.txt)"}
    port = free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    env = {"BENCH_CELERY_BROKER": broker}
    redis_cmd = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        # Celery's client reads results over pub/sub; with 2,000 chains finishing at once the
        # default 8 MB limit for a slow subscriber made Redis drop the client mid-run
        "--client-output-buffer-limit",
        "pubsub 0 0 0",
    ]
    worker = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "bench.celery_chain",
        "worker",
        "--concurrency",
        "2",
        "--pool",
        "prefork",
        "--loglevel",
        "warning",
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
    ]
    count = 500 if QUICK else 2000
    with process(redis_cmd) as broker_proc:
        time.sleep(0.5)
        os.environ["BENCH_CELERY_BROKER"] = broker
        from celery import chain

        from .celery_chain import noop

        with process(worker, env=env) as worker_proc:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait until the worker answers
                try:
                    noop.delay().get(timeout=2)
                    break
                except Exception:
                    time.sleep(0.5)
            latencies = []
            for _ in range(30 if QUICK else 100):
                start = time.perf_counter()
                chain(noop.s(None, 1), noop.s(2), noop.s(3)).apply_async().get(timeout=30)
                latencies.append((time.perf_counter() - start) * 1000)
            rates, worker_cpu, broker_cpu = [], 0.0, 0.0
            for _ in range(REPS):
                start = time.perf_counter()
                cpu = tree_cpu_seconds(worker_proc.pid), tree_cpu_seconds(broker_proc.pid)
                results = [
                    chain(noop.s(None, 1), noop.s(2), noop.s(3)).apply_async() for _ in range(count)
                ]
                for r in results:
                    r.get(timeout=300)
                rates.append(count / (time.perf_counter() - start))
                worker_cpu += tree_cpu_seconds(worker_proc.pid) - cpu[0]
                broker_cpu += tree_cpu_seconds(broker_proc.pid) - cpu[1]
    return {
        "chains": count,
        "chains_per_s": summary(rates),
        # the worker's processes (its main one and the pool of 2) and the broker's, per chain
        # in the throughput runs: what Ops-Core's CPU per workflow (and its store's) compare to
        "cpu_ms_per_chain": worker_cpu / (count * REPS) * 1000,
        "broker_cpu_ms_per_chain": broker_cpu / (count * REPS) * 1000,
        "latency_ms": {
            "p50": statistics.median(latencies),
            "p99": statistics.quantiles(latencies, n=100)[98],
            "runs": len(latencies),
        },
    }


# --- scale and memory (separate interpreter each, so RSS is theirs alone) ----------------------
def _python(module: str, *args: str, cwd: Path = BENCH.parent) -> dict[str, Any]:
    """The last line a benchmark module prints, as JSON, run from ``cwd`` (the tree whose
    code it then imports: ``bench.ab`` runs another build's)."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=cwd,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{module} exited {out.returncode}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_scale() -> dict[str, Any]:
    """Small and large cases alternate, and each pair gives a ratio: the small case lasts about
    0.1 s, so a slow moment of this shared machine would otherwise move one side only."""
    small: list[float] = []
    large: list[float] = []
    for _ in range(SCALE_REPS):
        small.append(_python("bench.scale", "--agents", "10", "--tasks", "1000")["tasks_per_s"])
        large.append(_python("bench.scale", "--agents", "1000", "--tasks", "10000")["tasks_per_s"])
    ratios = [big / little for little, big in zip(small, large, strict=True)]
    return {
        "small": {"agents": 10, "tasks": 1000, "tasks_per_s": summary(small)},
        "large": {"agents": 1000, "tasks": 10000, "tasks_per_s": summary(large)},
        "ratio": summary(ratios),
    }


def bench_stores() -> dict[str, Any]:
    """The workflow benchmark on every store (and two replicas on the shared ones), with the
    Redis commands per workflow (bench/stores.py)."""
    return _python("bench.stores", "--runs", "500" if QUICK else "2000", "--replicas", "2")


def bench_probes() -> dict[str, Any]:
    """Liveness in steady state: 10,000 silent agents probed at the default interval; the peer
    is the same process with the same fleet and liveness off."""
    return _python("bench.probes", "--agents", "10000", "--seconds", "10" if QUICK else "30")


def bench_stall() -> dict[str, Any]:
    """/health latency during a burst of store writes: SQLite against memory://."""
    return _python("bench.store_stall", "--seconds", "4" if QUICK else "10")


def bench_outage() -> dict[str, Any]:
    """A 10-second Redis outage (stopped) in the middle of 200 runs; with PostgreSQL installed,
    the same with every process of its cluster SIGKILLed."""
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server not installed"}
    runs = "50" if QUICK else "200"
    result = _python("bench.outage", "--runs", runs, "--outage", "10")
    from tests.storage_servers import postgres_missing

    if not postgres_missing():
        result["postgresql"] = _python(
            "bench.outage", "--runs", runs, "--outage", "10", "--store", "postgresql"
        )
    return result


def bench_hostile() -> dict[str, Any]:
    """/health and memory while hostile templates are refused, against benign ones."""
    return _python("bench.hostile", "--seconds", "4" if QUICK else "10")


def bench_memory() -> dict[str, Any]:
    reports = "200000" if QUICK else "1000000"
    return _python("bench.memory", "--agents", "10000", "--reports", reports)


# --- soak -------------------------------------------------------------------------------------
SOAK_AGENTS = 32
# Finished runs kept (OPSCORE_SESSION_RETENTION): small enough to be reached during warm-up.
SOAK_RETENTION = "1000"


def bench_soak() -> dict[str, Any]:
    seconds = int(os.environ.get("BENCH_SOAK_SECONDS", "60" if QUICK else "300"))
    po, pa = free_port(), free_port()
    url = f"http://127.0.0.1:{po}"
    agents = fast_agents_cmd(url, pa, SOAK_AGENTS)
    samples: list[tuple[float, float]] = []
    env = opscore_env(po, OPSCORE_SESSION_RETENTION=SOAK_RETENTION, OPSCORE_DISPATCH_THREAD="true")
    with process(opscore_cmd(), env=env, ready_url=f"{url}/health") as ops:
        register(url, 1000)
        with httpx.Client(base_url=url, headers={"X-API-Key": KEY}) as c:
            c.post("/v1/opscore/workflows", json=CHAIN).raise_for_status()
        with process(agents, ready_url=f"http://127.0.0.1:{pa}/health"):
            cmd = [
                "wrk",
                "-t",
                "2",
                "-c",
                "500",
                "-d",
                f"{seconds}s",
                "--latency",
                "-s",
                str(BENCH / "mixed.lua"),
                url,
                "--",
                KEY,
                "1000",
                next_base(),
                "2",
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            start = time.monotonic()
            while proc.poll() is None:
                samples.append((time.monotonic() - start, rss_mb(ops.pid)))
                time.sleep(5)
            out = proc.stdout.read() if proc.stdout else ""
    line = next(ln for ln in out.splitlines() if ln.startswith("JSON "))
    data = json.loads(line[5:])
    warm = [rss for t, rss in samples if t >= min(60, seconds / 3)]
    return {
        "seconds": seconds,
        "connections": 500,
        "requests": data["requests"],
        "rps": data["requests"] / (data["duration_us"] / 1e6),
        "errors": sum(
            data[k]
            for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "status_errors")
        ),
        "status_errors": data["status_errors"],
        "p99_ms": data["p99_ms"],
        "rss_mb_after_warmup": warm[0] if warm else None,
        "rss_mb_end": samples[-1][1] if samples else None,
        "rss_growth_after_warmup_pct": 100 * (warm[-1] - warm[0]) / warm[0]
        if len(warm) > 1
        else None,
        "rss_mb_every_30s": [round(rss) for _, rss in samples[::6]],
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "",
        "Ops-Core benchmarks  (median [min..max] of repeated runs, this machine, this run)",
        "",
    ]

    def spread(s: dict[str, float], fmt: str = "{:.0f}") -> str:
        return f"{fmt.format(s['median'])} [{fmt.format(s['min'])}..{fmt.format(s['max'])}]"

    if "ingest" in results:
        for conns, r in results["ingest"].items():
            lines.append(
                f"state ingest, {conns} connections: Ops-Core {spread(r['opscore']['rps'])} req/s "
                f"(p99 {r['opscore']['p99_ms']['median']:.1f} ms, errors {r['opscore']['errors']}) | "
                f"bare FastAPI {spread(r['baseline']['rps'])} req/s (p99 {r['baseline']['p99_ms']['median']:.1f} ms)"
                f" | ratio {spread(r['ratio'], '{:.2f}')}x"
            )
    if "workflows" in results:
        w = results["workflows"]
        lines.append(
            f"workflows ({w['workflows']} x 3 no-op tasks, 8 agents): {spread(w['workflows_per_s'])} workflows/s, "
            f"{spread(w['tasks_per_s'])} tasks/s; one workflow on an idle service: p50 "
            f"{w['latency_ms']['p50']:.1f} ms, p99 {w['latency_ms']['p99']:.1f} ms"
        )
    if "celery" in results and "chains_per_s" in results["celery"]:
        c = results["celery"]
        lines.append(
            f"celery ({c['chains']} chains, 1 worker x 2): {spread(c['chains_per_s'])} chains/s; "
            f"p50 {c['latency_ms']['p50']:.1f} ms, p99 {c['latency_ms']['p99']:.1f} ms"
        )
        if "workflows" in results:
            lines.append(
                f"  Ops-Core / Celery throughput: "
                f"{results['workflows']['workflows_per_s']['median'] / c['chains_per_s']['median']:.2f}x"
            )
    if "stores" in results:
        memory = next((r for r in results["stores"]["stores"] if r["store"] == "memory"), None)
        celery = results.get("celery", {}).get("chains_per_s", {}).get("median")
        for r in results["stores"]["stores"]:
            ratios = []
            if memory and r is not memory:
                ratios.append(f"{r['workflows_per_s'] / memory['workflows_per_s']:.2f}x memory")
            if celery:
                ratios.append(f"{r['workflows_per_s'] / celery:.2f}x Celery")
            extra = f", p50 {r['p50_ms']:.1f} ms" if "p50_ms" in r else ""
            if "redis_round_trips_per_workflow" in r:
                extra += (
                    f", {r['redis_round_trips_per_workflow']:.0f} Redis round trips and "
                    f"{r['redis_commands_per_workflow']:.0f} commands per workflow"
                )
            lines.append(
                f"store {r['store']} x{r['replicas']}: {r['workflows_per_s']:.0f} workflows/s"
                f"{extra}, {r['cpu_ms_per_workflow']:.1f} CPU-ms per workflow"
                + (f" ({', '.join(ratios)})" if ratios else "")
            )
    if "scale" in results:
        s = results["scale"]
        lines.append(
            f"dispatch, 10 agents/1,000 tasks: {spread(s['small']['tasks_per_s'])} tasks/s; "
            f"1,000 agents/10,000 tasks: {spread(s['large']['tasks_per_s'])} tasks/s; "
            f"ratio {spread(s['ratio'], '{:.2f}')}x (pairs run back to back)"
        )
    if "memory" in results and "rss_mb" in results["memory"]:
        m = results["memory"]
        lines.append(
            f"memory: {m['reports']:,} state reports over {m['agents']:,} agents -> RSS {m['rss_mb']:.0f} MB "
            f"(after {m['reports'] // 2:,}: {m['rss_mb_half']:.0f} MB; +{m['extra_reports']:,} more: "
            f"{m['rss_mb_after_more']:.0f} MB)"
        )
    if "probes" in results:
        p = results["probes"]
        lines.append(
            f"liveness: {p['agents']:,} silent agents, probe every {p['probe_interval']:g} s: "
            f"{p['probes_per_s']:.0f} probes/s, {100 * p['liveness_core_share']:.1f}% of one core "
            f"(peer without liveness: {100 * p['peer_core_share']:.2f}%)"
        )
    if "stall" in results:
        st = results["stall"]
        lines.append(
            f"/health during a write burst: SQLite p99 {st['sqlite']['health_p99_ms']:.1f} ms "
            f"({st['sqlite']['reports_per_s']:.0f} reports/s), memory p99 "
            f"{st['memory']['health_p99_ms']:.1f} ms: {st['health_p99_ratio']:.2f}x"
        )
    if "outage" in results and "runs" in results["outage"]:
        for o in (results["outage"], results["outage"].get("postgresql")):
            if o:
                lines.append(
                    f"{o.get('store', 'redis')} outage of {o['outage_seconds']:g} s mid-way "
                    f"through {o['runs']} runs: {o['completed']} completed, dispatch resumed "
                    f"{o['dispatch_resumed_after_s']:.3f} s after the store returned, "
                    f"{o['tasks_handed_over_twice']} tasks handed over twice"
                )
    if "hostile" in results:
        h = results["hostile"]
        lines.append(
            f"hostile templates: /health p99 {h['hostile']['health_p99_ms']:.1f} ms vs "
            f"{h['benign']['health_p99_ms']:.1f} ms benign ({h['health_p99_ratio']:.2f}x); RSS "
            f"{h['hostile']['rss_mb_before']:.0f} -> {h['hostile']['rss_mb_after']:.0f} MB"
        )
    if "soak" in results:
        s = results["soak"]
        lines.append(
            f"soak: {s['connections']} connections x {s['seconds']} s mixed: {s['rps']:.0f} req/s, "
            f"errors {s['errors']}, p99 {s['p99_ms']:.0f} ms, RSS {s['rss_mb_after_warmup']:.0f} -> "
            f"{s['rss_mb_end']:.0f} MB after warm-up"
        )
    for name, error in results.get("failed", {}).items():
        lines.append(f"{name}: FAILED ({error})")
    return "\n".join(lines) + "\n"


def main() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: apt-get install wrk")
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "started": datetime.now(UTC).isoformat(),
        "quick": QUICK,
    }
    for name, fn in (
        ("ingest", bench_ingest),
        ("workflows", bench_workflows),
        ("celery", bench_celery),
        ("stores", bench_stores),
        ("scale", bench_scale),
        ("memory", bench_memory),
        ("probes", bench_probes),
        ("stall", bench_stall),
        ("outage", bench_outage),
        ("hostile", bench_hostile),
        ("soak", bench_soak),
    ):
        if wanted(name):
            print(f"running {name} ...", file=sys.stderr, flush=True)
            try:
                results[name] = fn()
            except Exception as exc:  # one broken benchmark must not lose the others' figures
                print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                results.setdefault("failed", {})[name] = f"{type(exc).__name__}: {exc}"
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps(results, indent=2))
    print(table(results))
    print(f"(JSON: {out_dir / 'latest.json'})")
    if "failed" in results:
        sys.exit(1)


if __name__ == "__main__":
    main()
