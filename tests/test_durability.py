"""Durable and shared storage, end to end: SIGKILL mid-run on SQLite, Redis (AOF) and
PostgreSQL; two replicas sharing one Redis or one PostgreSQL; a replica killed while it holds
claims."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx
import pytest

from opscore.api import create_app

from .conftest import KEY, make_settings, store_url
from .fakes import Behaviour, FakeFleet
from .servers import OpsCoreProcess, ServerThread, wait_for
from .storage_servers import (
    PostgresServer,
    RedisServer,
    free_port,
    require_postgres,
    require_redis,
)
from .workflow_helpers import create, task, template

H = {"Authorization": f"Bearer {KEY}"}


def _crash_and_resume(storage_url: str, tmp_path: Path) -> None:
    runs = 50
    server = OpsCoreProcess(storage_url, free_port(), tmp_path / "opscore.log")
    server.start()
    fleet = FakeFleet(server.url, KEY, heartbeat=0.3).start()
    try:
        for i in range(4):
            fleet.add(f"agent-{i}", Behaviour(work_seconds=0.1, with_task_id=i % 2 == 0))
        with httpx.Client(base_url=server.url, headers=H, timeout=10) as client:
            create(
                client,
                template("chain", task("a", nextTaskId="b"), task("b", nextTaskId="c"), task("c")),
            )
            sessions = [
                client.post(
                    "/v1/opscore/workflows/chain/runs", json={"initialPayload": {"i": i}}
                ).json()["sessionId"]
                for i in range(runs)
            ]
            # Given runs in flight, when the process is SIGKILLed mid-way...
            wait_for(
                lambda: (
                    client.get(
                        "/v1/opscore/sessions", params={"status": "completed", "limit": 1}
                    ).json()["total"]
                    >= 5
                ),
                timeout=60,
            )
        server.kill()
        # ...and started again on the same store,
        server.start()
        with httpx.Client(base_url=server.url, headers=H, timeout=10) as client:
            # then nothing registered or stored was lost,
            assert client.get("/v1/opscore/agents").json()["total"] == 4
            assert client.get("/v1/opscore/workflows/chain").status_code == 200
            assert client.get("/v1/opscore/sessions", params={"limit": 1}).json()["total"] == runs
            assert client.get("/v1/opscore/agent/agent-0/state/history").json()["total"] >= 2

            # and every interrupted run resumes and finishes.
            def all_completed() -> bool:
                page = client.get(
                    "/v1/opscore/sessions", params={"status": "completed", "limit": 1}
                ).json()
                return page["total"] == runs

            wait_for(all_completed, timeout=120, interval=0.5)
            statuses = Counter(
                client.get(f"/v1/opscore/sessions/{sid}").json()["status"] for sid in sessions
            )
            assert statuses == Counter({"completed": runs})
            for sid in sessions[:10]:
                detail = client.get(f"/v1/opscore/sessions/{sid}").json()
                assert [t["status"] for t in detail["tasks"]] == ["completed"] * 3
    finally:
        fleet.stop()
        server.stop()


@pytest.mark.slow
def test_sigkill_mid_run_on_sqlite_loses_nothing_and_runs_resume(tmp_path: Path) -> None:
    _crash_and_resume(f"sqlite:///{tmp_path}/opscore.db", tmp_path)


@pytest.mark.slow
def test_sigkill_mid_run_on_redis_with_aof_loses_nothing(tmp_path: Path) -> None:
    require_redis()
    redis = RedisServer(tmp_path, appendonly=True).start()
    try:
        _crash_and_resume(redis.url, tmp_path)
    finally:
        redis.stop()


@pytest.mark.slow
def test_sigkill_mid_run_on_postgresql_loses_nothing(tmp_path: Path) -> None:
    require_postgres()
    postgres = PostgresServer().start()
    try:
        _crash_and_resume(postgres.url, tmp_path)
    finally:
        postgres.remove()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_two_replicas_on_one_store_dispatch_each_attempt_once(backend, request, tmp_path) -> None:
    runs = 200
    settings = make_settings(storage_url=store_url(request, backend, tmp_path), access_log=False)
    replicas = [ServerThread(create_app(settings)).start() for _ in range(2)]
    fleet = FakeFleet(replicas[0].url, KEY).start()
    try:
        for i in range(5):
            fleet.add(f"agent-{i}")
        with httpx.Client(base_url=replicas[0].url, headers=H, timeout=30) as client:
            create(
                client,
                template("chain", task("a", nextTaskId="b"), task("b", nextTaskId="c"), task("c")),
            )

            async def trigger() -> list[str]:
                async with httpx.AsyncClient(headers=H, timeout=30) as c:
                    responses = await asyncio.gather(
                        *(
                            c.post(
                                f"{replicas[i % 2].url}/v1/opscore/workflows/chain/runs", json={}
                            )
                            for i in range(runs)
                        )
                    )
                assert {r.status_code for r in responses} == {202}
                return [r.json()["sessionId"] for r in responses]

            asyncio.run(trigger())

            def done() -> bool:
                page = client.get(
                    "/v1/opscore/sessions", params={"status": "completed", "limit": 1}
                ).json()
                return page["total"] == runs

            wait_for(done, timeout=180, interval=0.5)
        sent = Counter(fleet.task_ids())
        assert len(sent) == runs * 3 and max(sent.values()) == 1, (
            "each task dispatched exactly once"
        )
    finally:
        fleet.stop()
        for replica in replicas:
            replica.stop()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_a_replica_killed_while_it_holds_claims_leaves_its_work_to_the_other(
    backend, request, tmp_path
) -> None:
    """Replica A takes the triggers and claims work; it is SIGKILLed mid-run. Agents report to
    replica B, which finishes every run: A's unacknowledged claims come back when their lease
    expires, and the attempts A had handed over complete through B (or time out and retry)."""
    url = store_url(request, backend, tmp_path)
    a = OpsCoreProcess(url, free_port(), tmp_path / "a.log")
    b = OpsCoreProcess(url, free_port(), tmp_path / "b.log")
    a.start()
    b.start()
    fleet = FakeFleet(b.url, KEY, heartbeat=0.3).start()
    runs = 40
    try:
        for i in range(3):
            fleet.add(f"agent-{i}", Behaviour(work_seconds=0.2))
        with httpx.Client(base_url=a.url, headers=H, timeout=10) as client:
            create(client, template("chain", task("a", nextTaskId="b"), task("b")))
            for _ in range(runs):
                assert client.post("/v1/opscore/workflows/chain/runs", json={}).status_code == 202
        with httpx.Client(base_url=b.url, headers=H, timeout=10) as client:

            def completed() -> int:
                page = client.get(
                    "/v1/opscore/sessions", params={"status": "completed", "limit": 1}
                ).json()
                return int(page["total"])

            wait_for(lambda: completed() >= 3, timeout=60)
            a.kill()  # mid-run, with queue entries claimed and attempts handed over
            assert completed() < runs
            wait_for(lambda: completed() == runs, timeout=180, interval=0.5)
            assert client.get("/v1/opscore/sessions", params={"limit": 1}).json()["total"] == runs
        sent = Counter(fleet.task_ids())
        assert len(sent) == runs * 2  # every task reached an agent
    finally:
        fleet.stop()
        a.stop()
        b.stop()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:1/0", "Cannot reach Redis"),
        ("sqlite:////proc/opscore-cannot-write/here.db", "Cannot open SQLite store"),
        ("sqlite://", "needs a file path"),
        ("postgresql://opscore:s3cret@127.0.0.1:1/opscore", "Cannot reach PostgreSQL"),
        ("redis://:s3cret@127.0.0.1:1/0", "Cannot reach Redis at redis://:***@127.0.0.1:1/0"),
        ("mysql://x", "Unsupported OPSCORE_STORAGE_URL"),
    ],
)
def test_unusable_store_stops_startup_with_a_clear_message(
    url: str, message: str, tmp_path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opscore", "serve"],
        env={
            **os.environ,
            "OPSCORE_API_KEY": KEY,
            "OPSCORE_STORAGE_URL": url,
            "OPSCORE_PORT": str(free_port()),
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr + result.stdout  # passwords never printed


def test_ready_reports_an_unavailable_store(tmp_path) -> None:
    require_redis()
    redis = RedisServer(tmp_path).start()
    server = ServerThread(create_app(make_settings(storage_url=redis.url))).start()
    try:
        assert httpx.get(server.url + "/ready").status_code == 200
        redis.stop()
        ready = httpx.get(server.url + "/ready")
        assert ready.status_code == 503 and "Redis unavailable" in ready.json()["checks"]["storage"]
        assert httpx.get(server.url + "/health").status_code == 200
        listing = httpx.get(server.url + "/v1/opscore/agents", headers=H)
        assert (
            listing.status_code == 503 and listing.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
        )
    finally:
        server.stop()
