"""The whole path against a local Ops-Core: two agents, a template, a run, its timeline.

    make run                                  # in one terminal; note the key it prints
    OPSCORE_API_KEY=<key> python examples/end_to_end.py

It starts two example agents (examples/agent.py) as subprocesses on 127.0.0.1:8101 and :8102,
stores examples/workflows/digest.yaml, runs it, waits for it, prints each task, and stops the
agents it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from opscore.client import OpsCoreClient

HERE = Path(__file__).resolve().parent


def start_agent(agent_id: str, port: int, *capabilities: str) -> subprocess.Popen[bytes]:
    args = [sys.executable, str(HERE / "agent.py"), "--id", agent_id, "--port", str(port)]
    for cap in capabilities:
        args += ["--capability", cap]
    return subprocess.Popen(args, env=os.environ.copy())


def wait_idle(ops: OpsCoreClient, agent_id: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ops.get_agent(agent_id).state == "idle":
                return
        except Exception:  # not registered yet
            pass
        time.sleep(0.2)
    raise SystemExit(f"agent {agent_id} did not come up")


def main() -> int:
    agents = [
        start_agent("fetcher-1", 8101, "fetch"),
        start_agent("writer-1", 8102, "summarize", "publish"),
    ]
    try:
        with OpsCoreClient() as ops:
            for agent_id in ("fetcher-1", "writer-1"):
                wait_idle(ops, agent_id)
            ops.create_workflow((HERE / "workflows" / "digest.yaml").read_text())
            run = ops.run_workflow("digest", {"topic": "agent operations"})
            print(f"started session {run.session_id}")
            session = ops.wait_for_session(run.session_id, timeout=60, poll_interval=0.2)
            print(f"session {session.status.value} in {session.duration_seconds:.2f}s")
            for task in session.tasks:
                print(
                    f"  {task.step_id:<10} {task.status.value:<10} on {task.agent_id:<10} "
                    f"attempts={task.attempts} result={task.result}"
                )
            return 0 if session.status.value == "completed" else 1
    finally:
        for proc in agents:
            proc.terminate()
        for proc in agents:
            proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
