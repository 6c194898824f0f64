"""`opscore serve` as several processes on one port (OPSCORE_PROCESSES): the processes share the
port and the work, their metrics add up, one that dies is started again, and a stop ends them
all. Real processes on a real Redis and PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from opscore.config import Settings
from opscore.processes import forget_dead_processes

from .conftest import KEY, store_url
from .fakes import FakeFleet
from .servers import OpsCoreProcess, metric, wait_for
from .storage_servers import free_port
from .workflow_helpers import create, settle, task, template

H = {"Authorization": f"Bearer {KEY}"}
RUNS_AT_MOST = 60  # runs started, each on a connection of its own, until both processes took one


@pytest.mark.parametrize("url", ["memory://", "sqlite:///ops.db"])
def test_processes_need_a_store_server(url: str) -> None:
    with pytest.raises(ValidationError, match="OPSCORE_PROCESSES above 1 needs a shared store"):
        Settings(storage_url=url, processes=2)
    assert Settings(storage_url=url, processes=1).processes == 1


def test_serve_refuses_processes_on_memory_in_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "OPSCORE_API_KEY": KEY, "OPSCORE_STORAGE_URL": "memory://"}
    done = subprocess.run(
        [sys.executable, "-m", "opscore", "serve", "--processes", "2", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.splitlines() == [
        "Invalid configuration:",
        "  OPSCORE_PROCESSES above 1 needs a shared store server: "
        "OPSCORE_STORAGE_URL=redis://... or postgresql://...",
    ]
    assert "Traceback" not in done.stderr


def _children(pid: int) -> set[int]:
    """The server processes uvicorn started (not multiprocessing's resource tracker)."""
    found = set()
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except FileNotFoundError:  # gone meanwhile
            continue
        if b"spawn_main" in command:
            found.add(int(child))
    return found


def _both(parent: int, without: int | None = None) -> set[int] | None:
    """The two server processes, once there are two (and ``without`` is not one of them)."""
    found = _children(parent)
    return found if len(found) == 2 and without not in found else None


def _gone(pid: int) -> bool:
    """Ended: no such process, or one that only waits to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _start_run(url: str) -> str:
    """A run started on a connection of its own: the kernel hands it to either process."""
    response = httpx.post(f"{url}/v1/opscore/workflows/chain/runs", json={}, headers=H, timeout=10)
    assert response.status_code == 202, response.text
    return str(response.json()["sessionId"])


def _starter(client: httpx.Client, session_id: str) -> str:
    """The replica (process) that logged the run's start: another one's records name it, the
    records of the process that answers (``client`` keeps its one connection to it) do not."""

    def logged() -> str | None:
        items = client.get(
            "/v1/opscore/logs", params={"sessionId": session_id, "limit": 50}
        ).json()["items"]
        started = [r for r in items if r["message"] == "workflow.started"]
        return started[0].get("replica", "the one answering") if started else None

    return str(wait_for(logged, timeout=10))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_processes_share_the_port_the_work_and_the_metrics(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = store_url(request, backend, tmp_path)
    server = OpsCoreProcess(url, free_port(), tmp_path / "opscore.log", OPSCORE_PROCESSES="2")
    server.start()
    fleet = FakeFleet(server.url, KEY).start()
    try:
        assert server.proc is not None
        wait_for(lambda: _both(server.proc.pid))
        fleet.add("worker-1")
        fleet.add("worker-2")
        with httpx.Client(base_url=server.url, headers=H, timeout=10) as client:
            create(client, template("chain", task("one", nextTaskId="two"), task("two")))
            # each process heard from the other through the store
            wait_for(
                lambda: metric(client.get("/metrics").text, "opscore_replicas") == 2, timeout=30
            )

            sessions: list[str] = []
            starters: set[str] = set()
            while len(starters) < 2 and len(sessions) < RUNS_AT_MOST:
                sessions.append(_start_run(server.url))
                starters.add(_starter(client, sessions[-1]))
            assert len(starters) == 2, f"one process took all {len(sessions)} connections"
            for sid in sessions:
                assert settle(client, sid)["status"] == "completed"
            # every task handed over once, whichever process dispatched it
            handed = fleet.task_ids()
            assert len(handed) == 2 * len(sessions)
            assert set(handed.values()) == {1}

            # the counters of both processes (each started some runs), added up, whichever
            # process answers the scrape
            def counted() -> bool:
                text = client.get("/metrics").text
                name = 'opscore_runs_total{status="started",workflow="chain"}'
                return metric(text, name) == len(sessions)

            wait_for(counted, timeout=10)
            # the store's gauges are read at the scrape, once
            text = client.get("/metrics").text
            assert metric(text, 'opscore_agents{state="idle"}') == 2
            assert text.count("# TYPE opscore_agents gauge") == 1
    finally:
        fleet.stop()
        server.stop()


def _trickled_headers_answer(port: int) -> bytes:
    """What a client gets that sends half its headers and then nothing."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: opscore\r\n")
        return conn.recv(4096)


@pytest.mark.slow
def test_a_process_that_dies_is_started_again_and_a_stop_ends_them_all(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = store_url(request, "redis", tmp_path)
    server = OpsCoreProcess(
        url,
        free_port(),
        tmp_path / "opscore.log",
        OPSCORE_PROCESSES="2",
        OPSCORE_HEADER_TIMEOUT_SECONDS="0.5",
    )
    server.start()
    fleet = FakeFleet(server.url, KEY).start()
    try:
        assert server.proc is not None
        parent = server.proc.pid
        first = wait_for(lambda: _both(parent))
        # each process serves Ops-Core's protocol, with its settings: headers are bounded by
        # 0.5 s, not the default 10
        for _ in range(4):
            began = time.monotonic()
            assert _trickled_headers_answer(server.port).startswith(b"HTTP/1.1 408 ")
            assert time.monotonic() - began < 5
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        # uvicorn's supervisor starts another in its place
        after = wait_for(lambda: _both(parent, without=victim), timeout=30)
        assert victim not in after
        fleet.add("worker")
        with httpx.Client(base_url=server.url, headers=H, timeout=10) as client:
            create(client, template("chain", task("one", nextTaskId="two"), task("two")))
            wait_for(
                lambda: metric(client.get("/metrics").text, "opscore_replicas") >= 2, timeout=30
            )
            sessions = [_start_run(server.url) for _ in range(6)]
            for sid in sessions:
                assert settle(client, sid)["status"] == "completed"
        server.proc.terminate()
        server.proc.wait(timeout=30)
        for pid in after:
            wait_for(lambda pid=pid: _gone(pid), timeout=10)
    finally:
        fleet.stop()
        server.stop()


def test_live_gauges_of_processes_that_died_unannounced_are_forgotten(tmp_path: Path) -> None:
    """A process SIGKILLed while its dispatcher failed left its "live" gauge at 1; the next
    process to start drops it, and keeps those of the processes still running."""
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead = int(ended.stdout)
    for pid in (dead, os.getpid()):
        (tmp_path / f"gauge_livemax_{pid}.db").write_bytes(b"")
    (tmp_path / f"counter_{dead}.db").write_bytes(b"")  # counters still count: kept

    assert forget_dead_processes(str(tmp_path)) == [dead]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{dead}.db", f"gauge_livemax_{os.getpid()}.db"]
    )
    assert forget_dead_processes(str(tmp_path)) == []
