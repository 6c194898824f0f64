"""Helpers for the benchmarks: start/stop processes on 127.0.0.1, run wrk, summarise runs."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
KEY = "bench-key-0123456789abcdef"
# Seconds an idle client connection to Ops-Core is kept for reuse: below uvicorn's keep-alive
# (5 s), after which the server closes it. aiohttp keeps one 15 s and takes the oldest idle
# connection first, so a driver whose polls cycled through its pool sent a request on a
# connection the server was closing, and the run ended in ServerDisconnectedError (seen with
# 1,000 agents on SQLite, where the polls are slower). The dispatcher does the same with the
# agents (dispatch/transports.py).
KEEPALIVE = 4.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(
    args: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    ready_url: str | None = None,
    ready_within: float = 30,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a process we own (up once ``ready_url`` answers, within ``ready_within``
    seconds); always stop it (by its PID) on the way out."""
    proc = subprocess.Popen(
        list(args),
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        if ready_url:
            wait_http(ready_url, ready_within)
            if proc.poll() is not None:  # another process answered on its port
                raise RuntimeError(f"{' '.join(args[:3])} exited ({proc.returncode})")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stat_fields(pid: int | str) -> list[str]:
    """A process's ``/proc/<pid>/stat`` after its name (which may hold spaces and
    parentheses): the state is [0], the parent [1], utime, stime, cutime, cstime [11:15]."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """CPU seconds of one process (user and system), children not included."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and of every process under it, children it already reaped
    included: a PostgreSQL cluster (its postmaster and backends), a Celery worker and its
    pool. A process that ends between two readings takes its time out of the sum unless its
    parent reaped it, so read around work whose processes stay up (pools, backends)."""
    stats: dict[int, tuple[int, float]] = {}  # pid: (parent, its own and reaped children's)
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(entry)
        except OSError:  # ended meanwhile
            continue
        stats[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]) / tick)
    children: dict[int, list[int]] = {}
    for child, (parent, _) in stats.items():
        children.setdefault(parent, []).append(child)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if current in stats:
            total += stats[current][1]
            todo.extend(children.get(current, ()))
    return total


def opscore_env(port: int, **extra: str) -> dict[str, str]:
    return {"OPSCORE_API_KEY": KEY, "OPSCORE_PORT": str(port), "OPSCORE_HOST": "127.0.0.1", **extra}


def opscore_cmd() -> list[str]:
    return [sys.executable, "-m", "opscore", "serve"]


def rss_mb(pid: int | str = "self") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wrk(
    url: str, script: Path, args: Sequence[str], *, connections: int, seconds: int, threads: int = 2
) -> dict[str, Any]:
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        *args,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("JSON "))
    data = json.loads(line[5:])
    data["rps"] = data["requests"] / (data["duration_us"] / 1e6)
    data["errors"] = sum(
        data[k]
        for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "status_errors")
    )
    return data


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median and spread (min, max) of repeated runs."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": len(values),
    }
