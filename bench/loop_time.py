"""Where one workflow's wall time goes inside the Ops-Core process, one at a time: waiting, its
own CPU, or off the CPU while it writes to a peer.

    python -m bench.loop_time [--runs 100] [--stores memory,redis]

One Ops-Core process per store with a probe loaded into it (``bench/loop_probe``, through
``PYTHONPATH``: Ops-Core itself has no such hook), the fast-agent process, and the 3-step chain
of ``bench.run`` run one at a time (after ``bench.run.WARM_UP`` runs left out). For each run,
between the server's own ``createdAt`` and ``finishedAt``:

- ``workflow``: the run's wall time;
- ``loop_waiting``: the time the event loop spent in ``select`` (nothing to do but wait for a
  peer: an agent, the store's server);
- ``thread_cpu``: the CPU time of the loop's thread;
- ``off_cpu_not_waiting``: the rest, ``workflow - loop_waiting - thread_cpu``: time the loop had
  work but the process was not on a CPU (another process ran in its place);
- ``writes_wall`` and ``writes_cpu``: the socket writes' wall time and their CPU time.

Prints one JSON line of medians (ms per workflow) per store. memory:// is the peer: the same
workflow with no store server.

Why: on a shared 2-core machine a write to a sleeping peer wakes it, and Linux often runs the
woken process on the writer's CPU (loopback wake-ups are "sync" wake-ups), so the writer waits
off the CPU until the peer has run. This says how much of the p50 that is.
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from .run import workflows_one_at_a_time
from .stores import _start_store, available_stores

PROBE = Path(__file__).resolve().parent / "loop_probe"
DUMP_WITHIN = 10.0  # seconds for the probe's file to appear after SIGUSR1


def _window(stamps: dict[str, list[list[float]]], start: float, end: float) -> dict[str, float]:
    """What the probe's stamps say of the wall-clock window [start, end] (seconds)."""
    selects = stamps["selects"]
    starts = [s[0] for s in selects]
    waiting = 0.0
    i = max(bisect.bisect_left(starts, start) - 1, 0)
    first_cpu = last_cpu = None
    while i < len(selects) and selects[i][0] < end:
        began, ended, cpu = selects[i]
        waiting += max(0.0, min(ended, end) - max(began, start))
        if began >= start:
            first_cpu = cpu if first_cpu is None else first_cpu
            last_cpu = cpu
        i += 1
    thread_cpu = 0.0 if first_cpu is None or last_cpu is None else last_cpu - first_cpu
    writes = [w for w in stamps["writes"] if start <= w[0] < end]
    wall = end - start
    ms = {
        "workflow": wall,
        "loop_waiting": waiting,
        "thread_cpu": thread_cpu,
        "off_cpu_not_waiting": max(0.0, wall - waiting - thread_cpu),
        "writes_wall": sum(w[1] for w in writes),
        "writes_cpu": sum(w[2] for w in writes),
    }
    return {k: v * 1000 for k, v in ms.items()} | {"writes": float(len(writes))}


def _stamps(pid: int, path: Path) -> dict[str, list[list[float]]]:
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + DUMP_WITHIN
    while time.monotonic() < deadline:
        try:
            stamps: dict[str, list[list[float]]] = json.loads(path.read_text())
            return stamps
        except (FileNotFoundError, json.JSONDecodeError):  # not there, or not whole yet
            time.sleep(0.05)
    raise RuntimeError(f"the probe wrote no stamps within {DUMP_WITHIN:.0f} s")


def _one_store(url: str, runs: int, directory: Path) -> dict[str, float]:
    dump = directory / "probe.json"
    windows: list[tuple[float, float]] = []
    with ExitStack() as stack:
        server, sessions = workflows_one_at_a_time(
            stack,
            url,
            runs,
            OPSCORE_LOOP_PROBE=str(dump),
            PYTHONPATH=os.pathsep.join(filter(None, [str(PROBE), os.environ.get("PYTHONPATH")])),
        )
        for session in sessions:
            created = datetime.fromisoformat(session["createdAt"]).timestamp()
            finished = datetime.fromisoformat(session["finishedAt"]).timestamp()
            windows.append((created, finished))
        stamps = _stamps(server.pid, dump)
    each = [_window(stamps, a, b) for a, b in windows]
    return {k: round(statistics.median(w[k] for w in each), 2) for k in each[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--stores", default="memory,redis")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in available_stores(args.stores):
            with ExitStack() as stack:
                directory = Path(tempfile.mkdtemp(dir=tmp))
                url, _ = _start_store(name, stack, directory)
                results[name] = _one_store(url, args.runs, directory)
            print(json.dumps({name: results[name]}), file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
