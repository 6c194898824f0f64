"""Workflows one at a time in an Ops-Core process with a probe loaded into it: the plumbing
that ``bench.loop_time`` and ``bench.steps`` share.

A probe is a ``sitecustomize.py`` in a folder of its own, put on the server's ``PYTHONPATH``
(Ops-Core itself has no such hook). It keeps its stamps in memory and writes them as JSON to
the file named by an environment variable when the process gets SIGUSR1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .run import FLEET, workflows_one_at_a_time
from .stores import _start_store, available_stores

DUMP_WITHIN = 10.0  # seconds for the probe's file to appear after SIGUSR1

# what a probe's stamps and the runs' sessions say of one store
Analysis = Callable[[Any, list[dict[str, Any]]], dict[str, Any]]


def dumped(pid: int, path: Path) -> Any:
    """The probe's stamps, written on SIGUSR1 (read once the file is whole)."""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + DUMP_WITHIN
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # not there, or not whole yet
            time.sleep(0.05)
    raise RuntimeError(f"the probe wrote no stamps within {DUMP_WITHIN:.0f} s")


def one_store(
    url: str, runs: int, directory: Path, probe: Path, variable: str, analyse: Analysis
) -> dict[str, Any]:
    """``runs`` runs of the chain one at a time on the store at ``url``, in a server with
    ``probe`` loaded (its file named by the environment variable ``variable``), analysed."""
    dump = directory / "probe.json"
    env = {
        variable: str(dump),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(probe), os.environ.get("PYTHONPATH")])),
    }
    with ExitStack() as stack:
        server, completed = workflows_one_at_a_time(
            stack, url, runs, fleet=FLEET, command=None, **env
        )
        sessions = list(completed)
        stamps = dumped(server.pid, dump)
    return analyse(stamps, sessions)


def main(probe: Path, variable: str, analyse: Analysis) -> None:
    """``--runs`` and ``--stores``; one JSON line per store on stderr as it ends, then one
    line of every store's on stdout."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--stores", default="memory,redis")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in available_stores(args.stores):
            with ExitStack() as stack:
                directory = Path(tempfile.mkdtemp(dir=tmp))
                url, _ = _start_store(name, stack, directory)
                results[name] = one_store(url, args.runs, directory, probe, variable, analyse)
            print(json.dumps({name: results[name]}), file=sys.stderr)
    print(json.dumps(results))
