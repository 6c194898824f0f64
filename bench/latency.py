"""Where one workflow's time goes, stage by stage, on each store: the p50 goal made readable.

    python -m bench.latency [--runs 40] [--stores memory,redis,postgresql,sqlite] [--agents 8]

One Ops-Core process per store and the fast-agent process (bench/fast_agents.py, ``--agents``
of them), the 3-step chain of ``bench.run`` run one at a time on an idle service (after
``bench.run.WARM_UP`` runs left out; the driver looks at a run only ``FIRST_LOOK`` after it
started, so its polls do not compete with the run). From the
server's own timestamps of each task: queued -> dispatched (until the dispatcher's pass
starts: a task is stamped with its pass's start), dispatched -> started (the pass's reads of
the queue and the agents, the hand-over, the agent's 202 and its ``active`` report), started
-> finished (the ``active`` report done,
then the ``idle`` one), finished -> next queued (completion, slot freed, the run advanced).
Prints one JSON line of p50s in milliseconds per store.

``--pin`` runs Ops-Core alone on the first CPU and everything else (this driver, the fast
agents, the store's server) on the others, as where agents and store run on other machines:
it shows how much of the p50 is this machine's processes taking turns on its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

from .common import opscore_cmd
from .run import FLEET, workflows_one_at_a_time
from .stores import _start_store, available_stores

STAGES = ("queued_to_dispatched", "dispatched_to_started", "started_to_finished", "to_next_queued")


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _ms(start: str, end: str) -> float:
    return (_at(end) - _at(start)).total_seconds() * 1000


def _one_store(
    url: str, runs: int, fleet: int = FLEET, *, pin: int | None = None
) -> dict[str, float]:
    stages: dict[str, list[float]] = {name: [] for name in (*STAGES, "workflow")}
    command = None if pin is None else ["taskset", "-c", str(pin), *opscore_cmd()]
    with ExitStack() as stack:
        _, sessions = workflows_one_at_a_time(stack, url, runs, fleet=fleet, command=command)
        for session in sessions:
            tasks: list[dict[str, Any]] = sorted(session["tasks"], key=lambda t: t["queuedAt"])
            for i, task in enumerate(tasks):
                stages["queued_to_dispatched"].append(_ms(task["queuedAt"], task["dispatchedAt"]))
                stages["dispatched_to_started"].append(_ms(task["dispatchedAt"], task["startedAt"]))
                stages["started_to_finished"].append(_ms(task["startedAt"], task["finishedAt"]))
                if i + 1 < len(tasks):
                    following = tasks[i + 1]["queuedAt"]
                    stages["to_next_queued"].append(_ms(task["finishedAt"], following))
            stages["workflow"].append(_ms(session["createdAt"], session["finishedAt"]))
    return {name: round(statistics.median(values), 2) for name, values in stages.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--stores", default="memory,sqlite,redis,postgresql")
    parser.add_argument("--agents", type=int, default=FLEET, help="the fast agents' fleet")
    parser.add_argument(
        "--pin", action="store_true", help="Ops-Core alone on one CPU, the rest on the others"
    )
    args = parser.parse_args()
    pin = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            parser.error("--pin needs two CPUs")
        pin = cpus[0]
        os.sched_setaffinity(0, cpus[1:])  # the agents and the store's server start from here
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in available_stores(args.stores):
            with ExitStack() as stack:
                url, _ = _start_store(name, stack, Path(tempfile.mkdtemp(dir=tmp)))
                results[name] = _one_store(url, args.runs, args.agents, pin=pin)
            print(json.dumps({name: results[name]}), file=sys.stderr)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
