"""``bench.stores --celery``: the Celery chain measured at the end of each round, and each
store's line against the chain of its own round (``bench.run.bench_celery``)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

from .run import _python, bench_celery


def celery_round(round_: int, *, attempts: int = 2) -> dict[str, Any]:
    """One Celery measurement (``bench_celery``) in an interpreter of its own, or why it
    failed. Its own: the chain's app takes its broker's address when it is imported, and each
    round's broker is a new redis-server on a new port. A failed measurement is tried once
    more, afresh: Celery's client loses its result backend now and then here ("Retry limit
    exceeded while trying to reconnect to the Celery result store backend"), a fault of the
    peer's client, not of what it measures; the stores' lines, minutes of work, are kept
    either way."""
    failures: list[str] = []
    celery: dict[str, Any] = {}
    for _ in range(attempts):
        try:
            celery = _python("bench.against_celery")
            break
        except RuntimeError as exc:  # it exited with an error: the end of what it said
            failures.append(str(exc)[-500:])
        except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}"[:500])
    if not celery:
        celery = {"failed": failures[-1]}
    if failures:
        celery["failed_attempts"] = failures
    celery["round"] = round_
    print(json.dumps({"celery": celery}), file=sys.stderr)
    return celery


def against_celery(lines: list[dict[str, Any]], celery: dict[str, Any]) -> None:
    """Each line of a round against that round's chain: its workflows/s over Celery's median
    chains/s (``throughput_against_celery``), and its whole cost (Ops-Core's CPU and its
    store's) over a chain's, worker and broker (``cpu_against_celery``)."""
    if "cpu_ms_per_chain" not in celery:
        return
    chain = celery["cpu_ms_per_chain"] + celery["broker_cpu_ms_per_chain"]
    for line in lines:
        spent = line["cpu_ms_per_workflow"] + line.get("store_cpu_ms_per_workflow", 0.0)
        line["cpu_against_celery"] = round(spent / chain, 3)
        line["throughput_against_celery"] = round(
            line["workflows_per_s"] / celery["chains_per_s"]["median"], 3
        )


def celery_medians(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per store and replica count, the rounds' ratios against Celery and their medians."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for line in lines:
        if "cpu_against_celery" in line:
            groups.setdefault((line["store"], line["replicas"]), []).append(line)
    out = []
    for (store, replicas), found in groups.items():
        entry: dict[str, Any] = {"store": store, "replicas": replicas}
        for key in ("throughput_against_celery", "cpu_against_celery"):
            values = [line[key] for line in found]
            entry[key] = {"rounds": values, "median": round(statistics.median(values), 3)}
        out.append(entry)
    return out


def main() -> None:
    """One Celery measurement, printed as one JSON line (what ``celery_round`` runs)."""
    print(json.dumps(bench_celery()))


if __name__ == "__main__":
    main()
