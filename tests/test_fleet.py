"""The whole fleet from any replica: two Ops-Core processes on one Redis or PostgreSQL. A run
started on one is whole, logs and spans, from the other; the rate limit holds across them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .conftest import KEY, store_url
from .fakes import FakeFleet
from .servers import OpsCoreProcess, metric, wait_for
from .storage_servers import free_port
from .workflow_helpers import create, run, settle, task, template

H = {"Authorization": f"Bearer {KEY}"}


def _replicas(client: httpx.Client, key: str = KEY) -> int:
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {key}"}).text
    return int(metric(metrics, "opscore_replicas"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_a_run_on_one_replica_is_whole_from_the_other(backend, request, tmp_path: Path) -> None:
    url = store_url(request, backend, tmp_path)
    a = OpsCoreProcess(url, free_port(), tmp_path / "a.log")
    b = OpsCoreProcess(url, free_port(), tmp_path / "b.log")
    a.start()
    fleet = FakeFleet(a.url, KEY).start()
    try:
        fleet.add("worker")
        with httpx.Client(base_url=a.url, headers=H, timeout=10) as on_a:
            create(on_a, template("shared", task("one", nextTaskId="two"), task("two")))
            # a run while A is alone: A ships nothing then, and B, once up, gets it all
            alone = run(on_a, "shared")
            assert settle(on_a, alone)["status"] == "completed"
        b.start()
        with (
            httpx.Client(base_url=a.url, headers=H, timeout=10) as on_a,
            httpx.Client(base_url=b.url, headers=H, timeout=10) as on_b,
        ):
            sid = run(on_a, "shared")
            detail = settle(on_a, sid)
            assert detail["status"] == "completed"

            # the logs of the run, all written by A, read from B (with the replica that wrote)
            def logged_on_b() -> list[dict]:
                items = on_b.get(
                    "/v1/opscore/logs", params={"sessionId": sid, "limit": 200}
                ).json()["items"]
                messages = {r["message"] for r in items}
                return items if {"workflow.started", "workflow.completed"} <= messages else []

            records = wait_for(logged_on_b, timeout=20)
            # the trigger was A's (B may have dispatched some of the tasks itself: one queue)
            started = next(r for r in records if r["message"] == "workflow.started")
            assert started.get("replica") and "replica" in started

            # its spans too: the trace API and the run's timeline on B
            def spans_on_b() -> set[str] | None:
                spans = on_b.get(f"/v1/opscore/traces/{detail['traceId']}").json()
                names = {s["name"] for s in spans.get("spans", [])}
                return names if {"invoke_workflow shared", "invoke_agent worker"} <= names else None

            assert wait_for(spans_on_b, timeout=20)
            # one tree, whichever replica handed each task over: every span's parent is in it
            # (but the request's, whose parent is the caller's, absent here)
            spans = on_b.get(f"/v1/opscore/traces/{detail['traceId']}").json()["spans"]
            ids = {s["spanId"] for s in spans}
            orphans = [s["name"] for s in spans if s["parentId"] and s["parentId"] not in ids]
            assert orphans == [], orphans
            assert sum(s["name"] == "task" for s in spans) == 2
            timeline = on_b.get(f"/v1/opscore/sessions/{sid}/timeline").json()
            sources = {e["source"] for e in timeline["events"]}
            assert {"run", "task", "attempt", "agent", "log", "span"} <= sources
            # and each knows the other is up
            wait_for(lambda: _replicas(on_a) == 2 and _replicas(on_b) == 2, timeout=20)
            # the run A finished before B started: its logs and spans, kept by A until then
            before = on_b.get("/v1/opscore/logs", params={"sessionId": alone}).json()["items"]
            assert {"workflow.started", "workflow.completed"} <= {r["message"] for r in before}
            trace = on_a.get(f"/v1/opscore/sessions/{alone}").json()["traceId"]
            kept = on_b.get(f"/v1/opscore/traces/{trace}").json()["spans"]
            assert sum(s["name"] == "task" for s in kept) == 2
    finally:
        fleet.stop()
        a.stop()
        b.stop()


@pytest.mark.slow
def test_the_rate_limit_holds_across_replicas(request, tmp_path: Path) -> None:
    url = store_url(request, "redis", tmp_path)
    # a second admin key, with a bucket of its own, to watch the replicas without spending
    # the tokens of the key under test
    watcher = "watcher-key-0123456789abcdef"
    limits = {
        "OPSCORE_RATE_LIMIT_PER_SECOND": "1",
        "OPSCORE_RATE_LIMIT_BURST": "20",
        "OPSCORE_API_KEYS": watcher,
    }
    a = OpsCoreProcess(url, free_port(), tmp_path / "a.log", **limits)
    b = OpsCoreProcess(url, free_port(), tmp_path / "b.log", **limits)
    a.start()
    b.start()
    try:
        with (
            httpx.Client(base_url=a.url, headers=H, timeout=10) as on_a,
            httpx.Client(base_url=b.url, headers=H, timeout=10) as on_b,
        ):
            wait_for(
                lambda: _replicas(on_a, watcher) == 2 and _replicas(on_b, watcher) == 2,
                timeout=20,
            )
            # a client spread over both by a load balancer: 20 requests of burst in total,
            # each replica keeping half
            answers = [
                (on_a if i % 2 else on_b).get("/v1/opscore/agents").status_code for i in range(40)
            ]
        allowed = answers.count(200)
        assert answers.count(429) == 40 - allowed
        # 20 of burst in total, plus what refills while the 40 go (1/s in total)
        assert 18 <= allowed <= 26, f"{allowed} of 40 got through a limit of 20 in total"
    finally:
        a.stop()
        b.stop()


def test_what_a_replica_ships_survives_values_json_cannot_hold() -> None:
    """Log records carry whatever a caller put in ``extra``: shipping one never fails."""
    import json
    from datetime import UTC, datetime

    from opscore.observe.fleet import _json

    when = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    shipped = json.loads(_json({"at": when, 7: "seven", "thing": object(), "ok": [1, 2.5]}))
    assert shipped["at"] == "2026-12-04T10:00:00+00:00"  # ISO, as the API shows times
    assert shipped["7"] == "seven" and shipped["ok"] == [1, 2.5]
    assert shipped["thing"].startswith("<object object")


class _Channel:
    """The shared channel in memory (``SharedTelemetry``): entries in order, each reader
    passing over its own."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str, str, str]] = []

    async def publish_telemetry(self, origin: str, entries: list[tuple[str, str]]) -> None:
        for kind, data in entries:
            self.entries.append((str(len(self.entries) + 1), origin, kind, data))

    async def read_telemetry(self, after, limit, *, passing_over=None):
        start = int(after) if after is not None else max(len(self.entries) - limit, 0)
        read = self.entries[start : start + limit]
        mine = [e for e in read if e[1] != passing_over]
        return str(start + len(read)), mine


async def test_a_replica_counts_itself_and_the_others_it_heard_lately() -> None:
    """Replicas up: this one, always, and each other heard of within ``ALIVE`` seconds.
    A replica no longer reads its own entries back, and after ``ALIVE`` seconds up it
    counted only the others: two replicas said one, turning off what depends on the count
    (the rate limit's split, the dispatch affinity, a claim's rows read along)."""
    from opscore.observe.fleet import ALIVE, FleetTelemetry
    from opscore.observe.logs import LogBuffer
    from opscore.observe.tracing import Tracer

    now = [1000.0]
    channel = _Channel()
    a, b = (
        FleetTelemetry(channel, LogBuffer(100), Tracer(), clock=lambda: now[0])  # type: ignore[arg-type]
        for _ in range(2)
    )
    assert a.replicas() == 1
    for step in range(3):  # heard from each other, then ALIVE and more up
        await a.ship()
        await b.ship()
        await a.pull()
        await b.pull()
        assert step == 0 or (a.replicas(), b.replicas()) == (2, 2)
        now[0] += ALIVE * 0.6
    now[0] += ALIVE  # b silent since: a counts itself only
    await a.ship()
    await a.pull()
    assert a.replicas() == 1


async def test_a_replica_alone_ships_that_it_is_up_and_its_records_once_another_is() -> None:
    """Records shipped to no one were 4% of a lone Redis replica's CPU: alone, a replica says
    only that it is up (every HEARTBEAT seconds) and keeps its records, and the one that joins
    gets them once each has heard of the other; alone again, it stops shipping."""
    import logging

    from opscore.observe.fleet import ALIVE, HEARTBEAT, OUTBOX, FleetTelemetry
    from opscore.observe.logs import LogBuffer
    from opscore.observe.outbox import Outbox
    from opscore.observe.tracing import Tracer

    now = [1000.0]
    channel = _Channel()

    def replica() -> FleetTelemetry:
        fleet = FleetTelemetry(channel, LogBuffer(100), Tracer(), clock=lambda: now[0])  # type: ignore[arg-type]
        fleet.logs.outbox = Outbox(OUTBOX)  # as start() sets it, without its loop
        return fleet

    def log(fleet: FleetTelemetry, message: str) -> None:
        fleet.logs.emit(logging.makeLogRecord({"name": "opscore.test", "msg": message}))

    def kinds() -> list[tuple[str, str]]:
        return [(origin, kind) for _, origin, kind, _ in channel.entries]

    a = replica()
    await a.pull()  # its first look, at its start: no one
    for message in ("one", "two", "three"):
        log(a, message)
    assert await a.ship() == 0 and kinds() == [(a.origin, "up")]
    assert await a.ship() == 0 and len(channel.entries) == 1  # the next only after HEARTBEAT

    b = replica()
    await b.pull()
    await b.ship()  # b is up
    await a.pull()
    assert a.replicas() == 2
    assert await a.ship() == 3  # what it kept while alone
    assert kinds()[2:] == [(a.origin, "log")] * 3
    await b.pull()
    shipped = [r for r in b.logs.snapshot() if r.get("replica") == a.origin]
    assert [r["message"] for r in shipped] == ["one", "two", "three"]

    now[0] += ALIVE + HEARTBEAT  # b gone: a alone again
    log(a, "four")
    await a.pull()
    assert a.replicas() == 1
    assert await a.ship() == 0 and kinds()[-1] == (a.origin, "up")
    assert a.logs.outbox.unshared(10)[0]["message"] == "four"  # kept for the next one


async def test_a_replica_keeps_no_more_log_records_for_the_others_than_its_buffer() -> None:
    """Kept while alone, the outbox's log records are the buffer's own: none held twice."""
    import logging

    from opscore.observe.fleet import OUTBOX, FleetTelemetry
    from opscore.observe.logs import LogBuffer
    from opscore.observe.tracing import Tracer

    fleet = FleetTelemetry(_Channel(), LogBuffer(100), Tracer())  # type: ignore[arg-type]
    fleet.start()
    try:
        for i in range(250):
            fleet.logs.emit(logging.makeLogRecord({"name": "opscore.test", "msg": f"m{i}"}))
        kept = fleet.logs.outbox.unshared(OUTBOX)
        assert len(kept) == 100
        assert all(a is b for a, b in zip(kept, fleet.logs.snapshot(), strict=True))
    finally:
        await fleet.stop()
