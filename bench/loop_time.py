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

import bisect
import statistics
from datetime import datetime
from pathlib import Path
from typing import Any

from . import probed

PROBE = Path(__file__).resolve().parent / "loop_probe"


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


def _analyse(
    stamps: dict[str, list[list[float]]], sessions: list[dict[str, Any]]
) -> dict[str, float]:
    """Medians over the runs of what the probe's stamps say of each run's window."""
    each = [
        _window(
            stamps,
            datetime.fromisoformat(session["createdAt"]).timestamp(),
            datetime.fromisoformat(session["finishedAt"]).timestamp(),
        )
        for session in sessions
    ]
    return {k: round(statistics.median(w[k] for w in each), 2) for k in each[0]}


if __name__ == "__main__":
    probed.main(PROBE, "OPSCORE_LOOP_PROBE", _analyse)
