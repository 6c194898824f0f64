"""Schedules with an injected clock: every tick fires once, across a restart and across two
replicas; overlap and catch-up policies; pause and resume; the API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from opscore.errors import StorageError
from opscore.lifecycle import AgentRegistry, AgentStates
from opscore.models import ScheduleCreate, ScheduleFields, WorkflowDefinition
from opscore.storage import storage_from_url
from opscore.storage.base import Storage
from opscore.workflow import Workflow, build_workflow
from opscore.workflow.cron import ScheduleError, check, next_tick

from .conftest import STORES, make_settings, store_url

T0 = datetime(2026, 12, 7, 10, 0, 30, tzinfo=UTC)  # a Monday
# a run that completes as it starts: its one step's condition is false
INSTANT = WorkflowDefinition.model_validate(
    {"id": "instant", "tasks": [{"taskId": "a", "agentCapability": "w", "when": "false"}]}
)
# a run that stays open until an operator decides
HELD = WorkflowDefinition.model_validate(
    {"id": "held", "tasks": [{"taskId": "review", "kind": "approval"}]}
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, **delta: float) -> datetime:
        self.now = T0 + timedelta(**delta)
        return self.now


def build(store: Storage, clock: Clock) -> Workflow:
    settings = make_settings()
    registry = AgentRegistry(store)
    states = AgentStates(store, settings, registry, clock)
    return build_workflow(store, settings, registry, states, clock=clock)


async def open_store(url: str) -> Storage:
    store = storage_from_url(url)
    await store.open()
    return store


async def fired(store: Storage, workflow_id: str = "instant") -> list[str]:
    """The ticks runs were started for, oldest first."""
    page = await store.list_sessions(
        status=None, workflow_id=workflow_id, agent_id=None, offset=0, limit=500
    )
    return sorted(s.metadata["scheduledFor"][11:16] for s in page.items)


@pytest.fixture(params=STORES)
async def url(request, tmp_path) -> str:
    return store_url(request, request.param, tmp_path)


@pytest.fixture
async def setup(url):
    clock = Clock(T0)
    store = await open_store(url)
    workflow = build(store, clock)
    for definition in (INSTANT, HELD):
        await workflow.templates.create_template(definition)
    yield store, workflow, clock
    await store.close()


def every_five(**fields: Any) -> ScheduleCreate:
    return ScheduleCreate.model_validate(
        {"scheduleId": "s", "workflowId": "instant", "cron": "*/5 * * * *", **fields}
    )


async def test_each_tick_fires_once_on_every_store(setup) -> None:
    store, workflow, clock = setup
    schedule = await workflow.schedules.create(every_five(payload={"n": 1}))
    assert schedule.next_fire_at == T0.replace(minute=5, second=0)
    assert schedule.description == "Every fifth minute of every hour"

    await workflow.schedules.sweep(clock.at(minutes=4))
    assert await fired(store) == []
    await workflow.schedules.sweep(clock.at(minutes=4, seconds=31))  # 10:05:01
    await workflow.schedules.sweep(clock.at(minutes=4, seconds=40))
    assert await fired(store) == ["10:05"]
    await workflow.schedules.sweep(clock.at(minutes=9, seconds=30))  # 10:10:00 exactly
    assert await fired(store) == ["10:05", "10:10"]

    current = await workflow.schedules.get("s")
    assert current.fired == 2 and current.skipped == 0
    assert current.next_fire_at == T0.replace(minute=15, second=0)
    sessions = await store.list_sessions(
        status="completed", workflow_id="instant", agent_id=None, offset=0, limit=10
    )
    assert sessions.total == 2 and sessions.items[0].initial_payload == {"n": 1}
    assert sessions.items[0].metadata["scheduleId"] == "s"


@pytest.mark.parametrize(
    ("catch_up", "expected", "skipped"),
    [
        ("one", ["10:30"], 4),
        ("all", ["10:10", "10:15", "10:20", "10:25", "10:30"], 0),
        ("skip", ["10:30"], 4),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"])
async def test_a_restart_catches_up_as_the_policy_says(
    request, backend, tmp_path, catch_up: str, expected: list[str], skipped: int
) -> None:
    url = store_url(request, backend, tmp_path)
    clock = Clock(T0)
    store = await open_store(url)
    workflow = build(store, clock)
    await workflow.templates.create_template(INSTANT)
    await workflow.schedules.create(every_five(catchUp=catch_up))
    await workflow.schedules.sweep(clock.at(minutes=5))
    await store.close()  # down from 10:05:30 to 10:30:50

    store = await open_store(url)
    restarted = build(store, clock)
    try:
        await restarted.schedules.sweep(clock.at(minutes=30, seconds=20))
        await restarted.schedules.sweep(clock.at(minutes=30, seconds=30))
        assert await fired(store) == ["10:05", *expected]
        after = await restarted.schedules.get("s")
        assert after.skipped == skipped
        assert after.next_fire_at == T0.replace(minute=35, second=0)
    finally:
        await store.close()


async def test_skip_drops_ticks_that_are_late(setup) -> None:
    store, workflow, clock = setup
    await workflow.schedules.create(every_five(catchUp="skip"))
    await workflow.schedules.sweep(clock.at(minutes=31, seconds=31))  # 10:32:01: all late
    assert await fired(store) == []
    assert (await workflow.schedules.get("s")).skipped == 6


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"])
async def test_two_replicas_fire_every_tick_exactly_once(request, backend, tmp_path) -> None:
    url = store_url(request, backend, tmp_path)
    clock = Clock(T0)
    stores = [await open_store(url), await open_store(url)]
    replicas = [build(s, clock) for s in stores]
    try:
        await replicas[0].templates.create_template(INSTANT)
        await replicas[1].schedules.create(every_five(overlap="allow"))
        for tick in range(1, 7):
            now = clock.at(minutes=5 * tick - 0.5, seconds=1)
            await asyncio.gather(*(r.schedules.sweep(now) for r in replicas for _ in range(3)))
        assert await fired(stores[0]) == ["10:05", "10:10", "10:15", "10:20", "10:25", "10:30"]
        assert (await replicas[0].schedules.get("s")).fired == 6
    finally:
        for store in stores:
            await store.close()


async def test_a_replica_that_dies_after_starting_a_run_does_not_start_it_twice(setup) -> None:
    store, workflow, clock = setup
    await workflow.schedules.create(every_five())
    put = workflow.schedules._put

    async def store_gone(*args: Any, **kwargs: Any) -> bool:
        raise StorageError("store unavailable")

    workflow.schedules._put = store_gone  # type: ignore[method-assign]
    await workflow.schedules.sweep(clock.at(minutes=5))  # run started, schedule not written
    workflow.schedules._put = put  # type: ignore[method-assign]
    await workflow.schedules.sweep(clock.at(minutes=5, seconds=30))  # still leased
    assert await fired(store) == ["10:05"]
    await workflow.schedules.sweep(clock.at(minutes=6, seconds=31))  # the lease ran out
    assert await fired(store) == ["10:05"]
    assert (await workflow.schedules.get("s")).next_fire_at == T0.replace(minute=10, second=0)


async def test_overlap_queue_one_holds_one_tick_until_the_run_ends(setup) -> None:
    store, workflow, clock = setup
    await workflow.schedules.create(every_five(workflowId="held", overlap="queue_one"))
    await workflow.schedules.sweep(clock.at(minutes=5))  # 10:05 starts, and waits
    await workflow.schedules.sweep(clock.at(minutes=10))  # 10:10 is held back
    await workflow.schedules.sweep(clock.at(minutes=15))  # 10:15 is skipped
    assert await fired(store, "held") == ["10:05"]
    held = await workflow.schedules.get("s")
    assert held.queued_tick == T0.replace(minute=10, second=0) and held.skipped == 1

    [waiting] = (await workflow.decisions.list_waiting()).items
    await workflow.decisions.approve(waiting.task_id, by="op", comment=None, payload={})
    await workflow.schedules.sweep(clock.at(minutes=15, seconds=2))
    assert await fired(store, "held") == ["10:05", "10:10"]
    assert (await workflow.schedules.get("s")).queued_tick is None


async def test_overlap_skip_and_allow(setup) -> None:
    _, workflow, clock = setup
    await workflow.schedules.create(every_five(workflowId="held"))
    await workflow.schedules.create(every_five(workflowId="held", scheduleId="a", overlap="allow"))
    for minutes in (5, 10, 15):
        await workflow.schedules.sweep(clock.at(minutes=minutes))
    assert (await workflow.schedules.get("s")).fired == 1
    assert (await workflow.schedules.get("s")).skipped == 2
    assert (await workflow.schedules.get("a")).fired == 3


async def test_paused_ticks_are_not_caught_up_and_trigger_runs_now(setup) -> None:
    store, workflow, clock = setup
    await workflow.schedules.create(every_five())
    clock.at(minutes=1)
    paused = await workflow.schedules.set_paused("s", True)
    assert paused.paused and paused.next_fire_at is None
    await workflow.schedules.sweep(clock.at(minutes=22))
    assert await fired(store) == []
    resumed = await workflow.schedules.set_paused("s", False)
    assert resumed.next_fire_at == T0.replace(minute=25, second=0)
    accepted = await workflow.schedules.trigger("s")
    assert (await store.get_session(accepted.session_id)).metadata["scheduleId"] == "s"
    await workflow.schedules.sweep(clock.at(minutes=25))
    assert len(await fired(store)) == 2


async def test_an_update_takes_effect_from_now(setup) -> None:
    _, workflow, clock = setup
    await workflow.schedules.create(every_five())
    clock.at(minutes=1)
    changed = await workflow.schedules.update("s", ScheduleFields(interval_seconds=60))
    assert changed.cron is None and changed.interval_seconds == 60
    assert changed.next_fire_at == T0 + timedelta(minutes=2)  # on the grid from creation
    await workflow.schedules.sweep(clock.at(minutes=2))
    assert (await workflow.schedules.get("s")).fired == 1


def test_cron_reads_in_its_time_zone_across_daylight_saving() -> None:
    winter = next_tick(
        "0 9 * * *", None, "Europe/Paris", datetime(2026, 12, 7, tzinfo=UTC), anchor=T0
    )
    summer = next_tick(
        "0 9 * * *", None, "Europe/Paris", datetime(2026, 7, 7, tzinfo=UTC), anchor=T0
    )
    assert winter == datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert summer == datetime(2026, 7, 7, 7, 0, tzinfo=UTC)
    assert check("@daily", None, "UTC") == "At 00:00 every day"


@pytest.mark.parametrize(
    ("cron", "interval", "zone", "message"),
    [
        ("61 * * * *", None, "UTC", "not valid"),
        ("* * *", None, "UTC", "not valid"),
        ("* * * * *", 60, "UTC", "exactly one"),
        (None, None, "UTC", "exactly one"),
        ("* * * * *", None, "Mars/Olympus", "Unknown time zone"),
    ],
)
def test_invalid_schedules_are_refused(cron, interval, zone, message) -> None:
    with pytest.raises(ScheduleError, match=message):
        check(cron, interval, zone)


def test_the_api_manages_schedules(client) -> None:
    client.post("/v1/opscore/workflows", json=INSTANT.model_dump(by_alias=True, mode="json"))
    body = {"scheduleId": "s1", "workflowId": "instant", "cron": "0 9 * * mon-fri"}
    created = client.post("/v1/opscore/schedules", json={**body, "timezone": "Europe/Paris"})
    assert created.status_code == 201, created.text
    assert created.json()["description"] == "At 09:00 on Monday through Friday"
    assert client.post("/v1/opscore/schedules", json=body).status_code == 409
    bad = client.post("/v1/opscore/schedules", json={**body, "scheduleId": "s2", "cron": "9 9"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "INVALID_SCHEDULE"
    typo = client.post("/v1/opscore/schedules", json={**body, "scheduleId": "s3", "cronn": "x"})
    assert typo.status_code == 422 and "unknown field 'cronn'" in typo.json()["error"]["message"]
    missing = client.post("/v1/opscore/schedules", json={**body, "workflowId": "nope"})
    assert missing.status_code == 404
    assert [s["scheduleId"] for s in client.get("/v1/opscore/schedules").json()["items"]] == ["s1"]
    paused = client.post("/v1/opscore/schedules/s1/pause").json()
    assert paused["paused"] is True and paused["nextFireAt"] is None
    assert client.post("/v1/opscore/schedules/s1/resume").json()["nextFireAt"] is not None
    patched = client.patch("/v1/opscore/schedules/s1", json={"intervalSeconds": 3600})
    assert patched.status_code == 200 and patched.json()["cron"] is None
    triggered = client.post("/v1/opscore/schedules/s1/trigger")
    assert triggered.status_code == 202
    session = client.get(f"/v1/opscore/sessions/{triggered.json()['sessionId']}").json()
    assert session["metadata"]["scheduleId"] == "s1"
    assert client.get("/v1/opscore/schedules/s1").json()["fired"] == 1
    assert client.delete("/v1/opscore/schedules/s1").status_code == 204
    assert client.get("/v1/opscore/schedules/s1").status_code == 404
