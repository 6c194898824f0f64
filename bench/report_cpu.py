"""CPU per state report: what one report costs `opscore serve`, whole, at low and high load.

    python -m bench.report_cpu [--seconds 5] [--connections 8,64]

One ``opscore serve`` on memory:// (access log off, as in the workflow benchmarks) with 1,000
agents registered; ``wrk`` sends state reports with ``state_report.lua`` (one report in
flight per connection) for ``--seconds`` at each number of ``--connections``, after a 2 s
warm-up. The server's CPU-seconds (``/proc``, all its threads) over each run, divided by the
reports answered, give its CPU microseconds per report: the HTTP protocol, the gateway, the
service and the store together. Prints one JSON line: per number of connections, requests
per second, CPU microseconds per report, wrk's p50 and its error count. Meant for
``python -m bench.ab`` (a change measured against its base in alternated rounds).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .common import KEY, cpu_seconds, free_port, opscore_cmd, opscore_env, process, wrk
from .run import BENCH, next_base, register

SCRIPT = BENCH / "state_report.lua"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", default="8,64")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    env = opscore_env(port, OPSCORE_ACCESS_LOG="false")
    with process(opscore_cmd(), env=env, ready_url=f"{url}/health") as server:
        register(url, 1000)
        wrk(url, SCRIPT, [KEY, "1000", next_base(), "2"], connections=64, seconds=2)
        for connections in (int(c) for c in args.connections.split(",")):
            before = cpu_seconds(server.pid)
            run = wrk(
                url,
                SCRIPT,
                [KEY, "1000", next_base(), "2"],
                connections=connections,
                seconds=args.seconds,
            )
            spent = cpu_seconds(server.pid) - before
            out[str(connections)] = {
                "rps": round(run["rps"], 1),
                "cpu_us_per_report": round(spent / max(run["requests"], 1) * 1e6, 1),
                "p50_ms": run["p50_ms"],
                "errors": run["errors"],
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
