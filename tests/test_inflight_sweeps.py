"""The sweeps that look at every task in flight share one read of them per round."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from opscore.container import build_services
from opscore.errors import StorageError
from opscore.models import Agent, TaskRun, TaskStatus, WorkflowDefinition, utcnow
from opscore.observe.logs import LogBuffer
from opscore.storage.memory import MemoryStorage
from opscore.workflow.inflight_sweeps import InflightSweeps

from .conftest import make_settings
from .counted_store import counted


async def test_a_round_of_the_dispatchers_sweeps_reads_the_tasks_in_flight_once() -> None:
    storage = MemoryStorage()
    calls = counted(storage)
    services = build_services(make_settings(), LogBuffer(100), storage=storage)
    await storage.open()
    try:
        # timeouts, wait timeouts, workers' leases and A2A polls: four reads a round before
        for sweep in services.dispatcher.sweeps:
            await sweep(utcnow())
        assert calls["inflight_tasks"] == 1
    finally:
        await storage.close()


async def test_each_sweep_gets_the_same_read_and_one_that_breaks_stops_no_other(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = MemoryStorage()
    calls = counted(storage)
    seen: list[tuple[str, int]] = []

    async def broken(now: datetime, tasks: list[TaskRun]) -> None:
        raise RuntimeError("a bug in one sweep")

    async def first(now: datetime, tasks: list[TaskRun]) -> None:
        seen.append(("first", id(tasks)))

    async def last(now: datetime, tasks: list[TaskRun]) -> None:
        seen.append(("last", id(tasks)))

    await InflightSweeps(storage, [first, broken, last])(utcnow())
    assert [name for name, _ in seen] == ["first", "last"]
    assert len({ident for _, ident in seen}) == 1  # one list, read once
    assert calls["inflight_tasks"] == 1
    assert "sweep" in caplog.text and "a bug in one sweep" in caplog.text


async def test_a_store_that_is_away_fails_the_round_for_the_dispatcher_to_back_off() -> None:
    storage = MemoryStorage()

    async def away(now: datetime, tasks: list[TaskRun]) -> None:
        raise StorageError("the store is away")

    with pytest.raises(StorageError):
        await InflightSweeps(storage, [away])(utcnow())


async def test_a_pull_task_timed_out_in_the_round_does_not_also_cost_its_worker_its_place() -> None:
    """Its deadline and its lease both ran out: the timeout sweep ends the attempt first; the
    workers' sweep then sees the task as the round's read had it, in flight, and must find
    that it moved (as it did when it read the task again) rather than mark the worker
    offline for a lease that no longer matters."""
    storage = MemoryStorage()
    services = build_services(make_settings(), LogBuffer(100), storage=storage)
    await storage.open()
    workflow = services.workflow
    now = utcnow()
    await storage.create_agent(
        Agent(
            agent_id="w",
            agent_name="w",
            delivery="pull",
            state="idle",
            last_seen=now,
            registered_at=now,
            updated_at=now,
        )
    )
    definition = WorkflowDefinition.model_validate(
        {"id": "p", "name": "p", "tasks": [{"taskId": "a", "name": "a", "timeoutSeconds": 60}]}
    )
    sid = (await workflow.runs.start_run(definition, payload={})).session_id
    [queued] = await storage.session_tasks(sid)
    worker = await storage.get_agent("w")
    dispatched = await workflow.handovers.mark_dispatched(queued, worker, now)
    assert dispatched is not None and dispatched.pull and dispatched.lease_until is not None

    [round_of_sweeps] = [s for s in services.dispatcher.sweeps if isinstance(s, InflightSweeps)]
    await round_of_sweeps(now + timedelta(hours=1))

    task = await storage.get_task(queued.task_id)
    assert task.status == TaskStatus.QUEUED and task.history[-1].outcome == "timeout"
    assert (await storage.get_agent("w")).state == "idle"
    await storage.close()
