"""One benchmark on two builds, in alternation: how a change is measured on a shared machine.

    python -m bench.ab BASE [--rounds 3] -- bench.stores --runs 2000 --stores sqlite

``BASE`` is a commit (or anything ``git worktree add`` takes); it is checked out in a temporary
worktree and measured against this working tree, both with this Python. Each round runs the
benchmark module once on each build, base first in odd rounds and this tree first in even ones
(ABBA), so that a machine whose speed drifts over minutes, as this one does by 10% and more,
weighs on both alike. The benchmark must print one JSON line last (every ``bench.*`` module
does). Prints each run's line as it ends, then one JSON line: every number in the benchmark's
output, by its path (``stores.0.cpu_ms_per_workflow``), with the base's and this tree's values
round by round and the median change. The worktree is removed on the way out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import ROOT
from .run import _python


def numbers(value: Any, path: str = "") -> dict[str, float]:
    """Every number in a JSON value, by its dotted path (list items by index)."""
    if isinstance(value, bool):
        return {}
    if isinstance(value, int | float):
        return {path: float(value)}
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = [(str(i), v) for i, v in enumerate(value)]
    found: dict[str, float] = {}
    for key, item in items:
        found.update(numbers(item, f"{path}.{key}" if path else key))
    return found


def compare(base: list[dict[str, Any]], head: list[dict[str, Any]]) -> dict[str, Any]:
    """Per number: both builds' values, round by round, and the median change in percent."""
    base_numbers = [numbers(r) for r in base]
    head_numbers = [numbers(r) for r in head]
    paths = [p for p in base_numbers[0] if all(p in n for n in base_numbers + head_numbers)]
    out: dict[str, Any] = {}
    for path in paths:
        before = [n[path] for n in base_numbers]
        after = [n[path] for n in head_numbers]
        middle = statistics.median(before)
        change = (statistics.median(after) - middle) / middle * 100 if middle else None
        out[path] = {
            "base": [round(v, 3) for v in before],
            "head": [round(v, 3) for v in after],
            "change_pct": None if change is None else round(change, 1),
        }
    return out


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(
        usage="python -m bench.ab BASE [--rounds N] -- MODULE [ARGS...]",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("base", help="the commit to measure this working tree against")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1 :]
    if not command:
        parser.error("name the benchmark after --, e.g. -- bench.stores --stores sqlite")
    module, bench_args = command[0], command[1:]
    results: dict[str, list[dict[str, Any]]] = {"base": [], "head": []}
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "base"
        subprocess.run(
            ["git", "worktree", "add", "--detach", "--quiet", str(worktree), args.base],
            cwd=ROOT,
            check=True,
        )
        try:
            for round_ in range(1, args.rounds + 1):
                order = [("base", worktree), ("head", ROOT)]
                for side, tree in order if round_ % 2 else reversed(order):
                    result = _python(module, *bench_args, cwd=tree)
                    results[side].append(result)
                    line = {"round": round_, "side": side, "result": result}
                    print(json.dumps(line), file=sys.stderr, flush=True)
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, check=False
            )
    print(json.dumps(compare(results["base"], results["head"])))


if __name__ == "__main__":
    main()
