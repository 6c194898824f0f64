"""CPU per guess a read of the fleet keeps (``storage/seen.py``), in this process.

    python -m bench.guesses [--agents 1000] [--rounds 200]

Each dispatch pass on Redis reads every agent and puts each one's record as a guess (up to
2,048 agents). Most are unchanged since the last pass. Per put, the best of ``--rounds``
puts of the whole fleet:

- ``unchanged_us``: every record equal to the guess held (a new string of the same text, as
  a read returns);
- ``changed_us``: the peer, every record different from the guess held (each pass
  alternates between two versions of every record).

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time

from opscore.storage.seen import GUESSES, Seen


def _record(i: int, version: str) -> str:
    return f'{{"agent_id":"agent-{i:06d}","state":"{version}","notes":"{"y" * 600}"}}'


def _best(seen: Seen, keys: list[str], passes: list[list[str]], rounds: int) -> float:
    """Microseconds per put, the best pass of ``rounds``."""
    best = float("inf")
    for r in range(rounds):
        records = passes[r % len(passes)]
        start = time.perf_counter()
        for key, raw in zip(keys, records, strict=True):
            seen.put(key, raw)
        best = min(best, time.perf_counter() - start)
    return round(best / len(keys) * 1e6, 3)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    keys = [f"opscore:agent:agent-{i:06d}" for i in range(args.agents)]
    idle = [_record(i, "idle") for i in range(args.agents)]
    busy = [_record(i, "busy") for i in range(args.agents)]
    seen = Seen(GUESSES)
    for key, raw in zip(keys, idle, strict=True):
        seen.put(key, raw)
    same = [[_record(i, "idle") for i in range(args.agents)]]  # equal text, new strings
    unchanged = _best(seen, keys, same, args.rounds)
    changed = _best(seen, keys, [busy, idle], args.rounds)
    print(json.dumps({"agents": args.agents, "unchanged_us": unchanged, "changed_us": changed}))


if __name__ == "__main__":
    main()
