"""A dispatch pass starts the tasks of a chunk at once on a store whose writes cost less
together (Redis: one script for all), and one after the other elsewhere."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, cast

import pytest

from opscore.dispatch.dispatcher import Dispatcher
from opscore.dispatch.hooks import DispatchHooks
from opscore.dispatch.transports import HandoverAnswer, Transport
from opscore.dispatch.wakeup import Wakeup
from opscore.errors import StorageError
from opscore.models import Agent, TaskRun, TaskStatus, utcnow
from opscore.storage.memory import MemoryStorage
from tests.conftest import make_settings
from tests.test_storage_contract import agent, task


class Starts:
    """Hooks that start attempts in the store (a round trip each: another coroutine may run
    meanwhile) and note when each start begins and ends."""

    def __init__(self, storage: MemoryStorage, *, failing: str | None = None) -> None:
        self.storage = storage
        self.log: list[str] = []
        self.failing = failing

    async def mark_dispatched(
        self, task: TaskRun, agent: Agent, now: datetime, *, ack_entry: bool = False
    ) -> TaskRun | None:
        self.log.append(f"{task.task_id}>" + ("a" if ack_entry else ""))
        await asyncio.sleep(0)
        if task.task_id == self.failing:
            raise StorageError("the store went away")
        started = await self.storage.update_task(
            task.task_id,
            {"status": TaskStatus.DISPATCHED, "agent_id": agent.agent_id},
            expect=["queued"],
            claim_slot_of=agent.agent_id,
            ack_entry=ack_entry,
        )
        self.log.append(f"<{task.task_id}")
        return started

    async def handover_answered(self, task: TaskRun, agent: Agent, answer: Any) -> None:
        pass


class Accepting:
    name = "test"

    def endpoint(self, agent: Agent) -> str | None:
        return None

    async def send(self, agent: Agent, task: TaskRun, headers: Any, *, timeout: float) -> Any:
        return HandoverAnswer(outcome="accepted", status_code=202)


async def _pass(
    together: bool,
    *,
    failing: str | None = None,
    cancelled: str | None = None,
    tasks: int = 3,
    free_seen: int = 0,
) -> tuple[int, Starts, MemoryStorage]:
    """One pass over ``tasks`` queued tasks and as many idle agents; ``free_seen``: the
    free slots the last pass left (its first look asks for as many entries, one at least)."""
    storage = MemoryStorage()
    storage.writes_together = together
    now = utcnow()
    for i in range(tasks):
        status = TaskStatus.CANCELLED if f"t{i}" == cancelled else TaskStatus.QUEUED
        await storage.create_agent(agent(f"a{i}", state="idle"))
        await storage.save_tasks([task(f"t{i}", status=status)])
        await storage.enqueue(f"t{i}", priority=0, ready_at=now)
    starts = Starts(storage, failing=failing)
    wakeup = Wakeup()
    wakeup.set(queued=True)
    dispatcher = Dispatcher(
        storage,
        make_settings(),
        cast(Transport, Accepting()),
        cast(DispatchHooks, starts),
        wakeup=wakeup,
        available_states={"idle"},
    )
    dispatcher._free_seen = free_seen
    try:
        sent = await dispatcher.dispatch_ready(now)
    finally:
        await dispatcher.deliveries.stop()
    return sent, starts, storage


@pytest.mark.parametrize("together", [True, False])
async def test_a_chunk_is_started_at_once_only_where_writes_cost_less_together(
    together: bool,
) -> None:
    sent, starts, storage = await _pass(together)
    assert sent == 3
    # the first look takes one entry; the next chunk holds the other two
    if together:
        assert starts.log == ["t0>", "<t0", "t1>", "t2>", "<t1", "<t2"]
    else:
        assert starts.log == ["t0>", "<t0", "t1>", "<t1", "t2>", "<t2"]
    for i in range(3):
        assert (await storage.get_task(f"t{i}")).status == TaskStatus.DISPATCHED
    assert await storage.queue_depth() == 0
    assert await storage.oldest_ready_at(utcnow()) is None  # all acknowledged


@pytest.fixture
def acked(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The ids of each ``MemoryStorage.ack`` call."""
    calls: list[list[str]] = []
    ack = MemoryStorage.ack

    async def counted(self: MemoryStorage, task_ids: Any) -> None:
        calls.append(list(task_ids))
        await ack(self, task_ids)

    monkeypatch.setattr(MemoryStorage, "ack", counted)
    return calls


async def test_the_only_entry_of_a_pass_is_acknowledged_as_its_attempt_starts(
    acked: list[list[str]],
) -> None:
    """An idle service's pass: it asks for as many entries as it saw free slots and finds
    one. The write that starts its attempt acknowledges it (``t0>a``): no ack is left to
    wait after the hand-over."""
    sent, starts, storage = await _pass(True, tasks=1, free_seen=3)
    assert sent == 1 and starts.log == ["t0>a", "<t0"]
    assert acked == []
    assert await storage.oldest_ready_at(utcnow()) is None


async def test_a_pass_of_several_acknowledges_them_together_at_its_end(
    acked: list[list[str]],
) -> None:
    """Handed over or dropped (a task cancelled meanwhile), the entries of a pass of
    several are acknowledged in one call at its end; so is a first look's one entry when
    it asked for one only (more may follow)."""
    sent, starts, storage = await _pass(True, cancelled="t1")
    assert sent == 2 and starts.log == ["t0>", "<t0", "t2>", "<t2"]
    assert acked == [["t0", "t1", "t2"]]
    assert await storage.oldest_ready_at(utcnow()) is None
    acked.clear()
    sent, starts, storage = await _pass(True, tasks=2, free_seen=3)
    assert sent == 2 and starts.log == ["t0>", "t1>", "<t0", "<t1"]
    assert acked == [["t0", "t1"]]


@pytest.mark.parametrize("together", [True, False])
async def test_a_start_the_store_refuses_fails_the_pass(together: bool) -> None:
    """The store went away during a start: the pass fails (the dispatcher backs off), and
    what was started is handed over, not lost."""
    with pytest.raises(StorageError):
        await _pass(together, failing="t1")
