"""What one workflow's wall time is made of inside the Ops-Core process, one at a time: the
requests it serves and the writes of their answers, the dispatcher's passes, its claims and
hand-over writes, the hand-overs to the agents, every store call by method, and on Redis each
round trip.

    python -m bench.steps [--runs 100] [--stores memory,redis]

One Ops-Core process per store with a probe loaded into it (``bench/step_probe``, through
``PYTHONPATH``: Ops-Core itself has no such hook), the fast-agent process, and the 3-step chain
of ``bench.run`` run one at a time (after ``bench.run.WARM_UP`` runs left out), as in
``bench.latency`` and ``bench.loop_time``. Each workflow's window runs from the start of the
request that triggered it to the end of the report that finished it. Per store, one JSON line:
the window's median (``workflow_ms``), and per kind of interval the median over workflows of
their count and of their summed wall time per workflow, and the median of one's wall time
(``one_ms``). Intervals overlap (a pass holds its store calls; a hand-over runs beside a pass),
so the sums do not add up to the window: each says how long that part took, not what it
added.

Why: the throwaway timelines that earlier measurements of issue 14 were built on (bench/README)
each patched the server by hand. This one says, store against store in one run, which part of a
step a store makes longer and by how much (memory:// is the peer: the same steps with no store
behind them).
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from . import probed

PROBE = Path(__file__).resolve().parent / "step_probe"
Stamp = tuple[float, str, str]
Interval = tuple[float, float, str]  # start, end, kind


def kind_of(kind: str, label: str) -> str:
    """The name an interval is counted under."""
    if kind == "request":
        if label.endswith("/runs"):
            return "trigger_request"
        if label.endswith("/state"):
            return "report_request"
        return "other_request"
    if kind == "store":
        return f"store.{label}"
    if kind == "redis":
        return "redis_round_trip"
    return kind


def intervals(stamps: list[Stamp]) -> list[Interval]:
    """Starts paired with ends of the same kind and label, the latest start first (calls of
    one kind nest; those that overlap without nesting are rare one workflow at a time). A
    Redis batch's replies end its round trip whatever label they carry."""
    open_: dict[tuple[str, str], list[float]] = defaultdict(list)
    found: list[Interval] = []
    for at, mark, label in stamps:
        kind, edge = mark[:-1], mark[-1]
        key = (kind, "" if kind == "redis" else label)
        if edge == "<":
            open_[key].append(at)
        elif open_[key]:
            found.append((open_[key].pop(), at, kind_of(kind, label)))
    return sorted(found)


def windows(found: list[Interval], sessions: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """Each run's window: from the start of the trigger request that holds its ``createdAt``
    to the end of the report request that holds its ``finishedAt``."""
    triggers = [i for i in found if i[2] == "trigger_request"]
    reports = [i for i in found if i[2] == "report_request"]
    out: list[tuple[float, float]] = []
    for session in sessions:
        created = datetime.fromisoformat(session["createdAt"]).timestamp()
        finished = datetime.fromisoformat(session["finishedAt"]).timestamp()
        start = next((a for a, b, _ in triggers if a <= created <= b), None)
        end = next((b for a, b, _ in reports if a <= finished <= b), None)
        if start is not None and end is not None:
            out.append((start, end))
    return out


def summary(found: list[Interval], spans: list[tuple[float, float]]) -> dict[str, Any]:
    """Medians over the workflows (see the module's docstring)."""
    counts: dict[str, list[int]] = defaultdict(list)
    sums: dict[str, list[float]] = defaultdict(list)
    ones: dict[str, list[float]] = defaultdict(list)
    starts = [a for a, _, _ in found]  # found is sorted: each window reads only its own
    for start, end in spans:
        inside: dict[str, list[float]] = defaultdict(list)
        first, last = bisect.bisect_left(starts, start), bisect.bisect_right(starts, end)
        for a, b, kind in found[first:last]:
            if b <= end:
                inside[kind].append(b - a)
        for kind, lengths in inside.items():
            counts[kind].append(len(lengths))
            sums[kind].append(sum(lengths))
            ones[kind].extend(lengths)
    result: dict[str, Any] = {
        "workflows": len(spans),
        "workflow_ms": round(statistics.median(b - a for a, b in spans) * 1000, 2),
    }
    for kind in sorted(sums, key=lambda k: -statistics.median(sums[k])):
        seen = counts[kind] + [0] * (len(spans) - len(counts[kind]))
        total = sums[kind] + [0.0] * (len(spans) - len(sums[kind]))
        result[kind] = {
            "count": statistics.median(seen),
            "ms": round(statistics.median(total) * 1000, 3),
            "one_ms": round(statistics.median(ones[kind]) * 1000, 3),
        }
    return result


def _analyse(raw: list[list[Any]], sessions: list[dict[str, Any]]) -> dict[str, Any]:
    found = intervals([(float(a), str(k), str(label)) for a, k, label in raw])
    return summary(found, windows(found, sessions))


if __name__ == "__main__":
    probed.main(PROBE, "OPSCORE_STEP_PROBE", _analyse)
