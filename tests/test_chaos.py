"""Chaos with real servers: the store goes away in the middle of runs and comes back. Every
background loop must survive, say what is wrong while it lasts, and resume by itself."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import pytest

from .conftest import KEY, make_settings
from .fakes import Behaviour
from .storage_servers import PostgresServer, RedisServer, require_postgres, require_redis
from .workflow_helpers import create, run, settle, task, template, wait_for


def test_a_redis_outage_in_the_middle_of_runs_is_survived_and_dispatch_resumes(
    fleet_factory, tmp_path
) -> None:
    require_redis()
    redis = RedisServer(tmp_path, appendonly=True).start()
    try:
        _outage_mid_run(fleet_factory, redis.url, stop=redis.stop, start=redis.start)
    finally:
        redis.stop()


def test_postgresql_sigkilled_in_the_middle_of_runs_is_survived_and_dispatch_resumes(
    fleet_factory,
) -> None:
    require_postgres()
    postgres = PostgresServer().start()
    try:
        _outage_mid_run(fleet_factory, postgres.url, stop=postgres.kill, start=postgres.resume)
    finally:
        postgres.remove()


def _outage_mid_run(
    fleet_factory, url: str, *, stop: Callable[[], object], start: Callable[[], object]
) -> None:
    # agents whose last report ('idle' after 'active') was lost in the outage stay 'active':
    # after a second of silence a probe finds them up with nothing in flight
    server, fleet = fleet_factory(make_settings(storage_url=url, agent_offline_after=1.0))
    for i in range(3):
        fleet.add(f"w{i}", Behaviour(work_seconds=0.05))
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ) as client:
        # a report an agent sent while the store was away is lost (agents do not retry): the
        # task's own timeout is what recovers its attempt, so keep it short here
        create(
            client,
            template("c", task("a", nextTaskId="b", timeoutSeconds=3), task("b", timeoutSeconds=3)),
        )
        before = [run(client, "c") for _ in range(10)]

        # Given the store goes away for two seconds in the middle of those runs
        stop()
        wait_for(lambda: client.get("/ready").status_code == 503, timeout=10)
        checks = client.get("/ready").json()["checks"]
        assert checks["storage"] != "ok"
        time.sleep(2)
        assert client.get("/health").status_code == 200  # the process itself is fine
        assert client.post("/v1/opscore/workflows/c/runs", json={}).status_code == 503

        # When it comes back
        start()

        # Then readiness returns, the loop is running again, and new and old runs finish
        wait_for(lambda: client.get("/ready").status_code == 200, timeout=15)
        assert client.get("/ready").json()["checks"]["dispatcher"] == "ok"
        after = [run(client, "c") for _ in range(5)]
        for sid in before + after:
            assert settle(client, sid, timeout=60)["status"] == "completed"
        metrics = client.get("/metrics").text
        assert 'opscore_background_degraded{loop="dispatcher"} 0.0' in metrics
        logs = client.get(
            "/v1/opscore/logs", params={"logger": "opscore.dispatcher", "limit": 500}
        ).json()["items"]
        messages = [r["message"] for r in logs]
        assert "dispatcher recovered" in messages
        # one record for the outage, not one per failed pass
        failing = [m for m in messages if m.startswith("dispatcher pass failed")]
        assert len(failing) <= 2


def test_a_full_disk_under_sqlite_is_a_503_and_the_service_recovers_when_space_returns(
    server_factory, tmp_path
) -> None:
    import subprocess

    disk = tmp_path / "small-disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        server = server_factory(make_settings(storage_url=f"sqlite:///{disk}/full.db"))
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
        ) as c:
            # Given the disk fills up
            statuses = set()
            for i in range(2_000):
                body = {"agentId": f"a{i}", "agentName": "x" * 150, "metadata": {"pad": "y" * 600}}
                status = c.post("/v1/opscore/agents", json=body).status_code
                statuses.add(status)
                if status != 201:
                    break
            # Then writes are refused in the one error shape, never a 500, and the process lives
            assert statuses == {201, 503}, statuses
            full = c.post("/v1/opscore/agents", json={"agentId": "late", "agentName": "l"})
            assert full.status_code == 503
            assert full.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
            assert c.get("/health").status_code == 200
            # When space returns, so does the service
            subprocess.run(["mount", "-o", "remount,size=20m", str(disk)], check=True)
            wait_for(
                lambda: (
                    c.post(
                        "/v1/opscore/agents", json={"agentId": "late", "agentName": "l"}
                    ).status_code
                    in (200, 201)
                ),
                timeout=10,
            )
            wait_for(lambda: c.get("/ready").status_code == 200, timeout=10)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
