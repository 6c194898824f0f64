"""The fleet read as what changed since the last read on SQLite (``storage/sqlite/fleet.py``):
the agents this process wrote, read by id, while no other connection wrote the file; a whole
read once another did (another process, or this process's own thread); and no write missed
by a whole read that ran on the thread while the loop went on writing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from opscore.storage.sqlite import SQLiteStorage
from opscore.storage.sqlite import agents as sqlite_agents

from .test_storage_contract import agent, record
from .test_storage_contract import agent_ids as ids

AVAILABLE = frozenset({"idle", "unknown"})


def _spied(store: SQLiteStorage) -> list[tuple[str, list[str]]]:
    """("whole" or "changed", the agent ids brought) of each of the store's fleet reads."""
    brought: list[tuple[str, list[str]]] = []
    changed, whole = store._fleet.changed, store._fleet.agents

    def spy(kind, apply):
        def counted(rows):
            rows = list(rows)
            brought.append((kind, [agent_id for agent_id, _ in rows]))
            return apply(rows)

        return counted

    store._fleet.changed, store._fleet.agents = spy("changed", changed), spy("whole", whole)
    return brought


@pytest.fixture
async def store(tmp_path):
    storage = SQLiteStorage(tmp_path / "fleet.db")
    await storage.open()
    yield storage
    await storage.close()


async def test_a_read_brings_back_only_the_agents_this_process_wrote_since(store) -> None:
    brought = _spied(store)
    for n in range(30):
        await store.create_agent(agent(f"a{n}", state="idle"))
    assert len(await store.available_agents(AVAILABLE)) == 30
    assert brought[-1][0] == "whole" and len(brought[-1][1]) == 30  # the first read
    assert len(await store.available_agents(AVAILABLE)) == 30
    assert brought[-1] == ("changed", [])  # nothing written since
    await store.record_state(record("a7", "active", 1), history_limit=8)
    available = await store.available_agents(AVAILABLE)
    assert brought[-1] == ("changed", ["a7"])
    assert "a7" not in ids(available) and len(available) == 29
    assert await store.claim_agent_slot("a3", "t1")  # its slot taken: no longer free
    await store.record_state(record("a7", "idle", 2), history_limit=8)
    available = await store.available_agents(AVAILABLE)
    assert sorted(brought[-1][1]) == ["a3", "a7"]
    assert ids(available) == {f"a{n}" for n in range(30)} - {"a3"}


async def test_another_process_writing_the_file_makes_the_next_read_whole(store, tmp_path) -> None:
    brought = _spied(store)
    other = SQLiteStorage(tmp_path / "fleet.db")  # another process on the same file
    await other.open()
    try:
        for name in ("a", "b", "c"):
            await other.create_agent(agent(name, state="idle"))
        assert ids(await store.available_agents(AVAILABLE)) == {"a", "b", "c"}
        await other.record_state(record("b", "active", 1), history_limit=8)
        assert ids(await store.available_agents(AVAILABLE)) == {"a", "c"}
        assert brought[-1] == ("whole", ["a", "c"])
        await other.delete_agent("c")
        assert ids(await store.available_agents(AVAILABLE)) == {"a"}
        assert brought[-1][0] == "whole"
        assert ids(await store.available_agents(AVAILABLE)) == {"a"}
        assert brought[-1] == ("changed", [])  # and none since
    finally:
        await other.close()


async def test_a_write_that_waited_on_the_store_thread_is_read(store) -> None:
    """A point write that found the file locked runs again on the store's thread, on the
    other connection: the next read is whole, and shows it."""
    brought = _spied(store)
    await store.create_agent(agent("a1", state="idle"))
    assert ids(await store.available_agents(AVAILABLE)) == {"a1"}
    holder = sqlite3.connect(store.path, isolation_level=None, timeout=1)
    try:
        holder.execute("BEGIN IMMEDIATE")
        write = asyncio.ensure_future(
            store.record_state(record("a1", "active", 1), history_limit=8)
        )
        await asyncio.sleep(0.05)
        holder.execute("ROLLBACK")  # nothing written by the holder itself
        await asyncio.wait_for(write, 15)
    finally:
        holder.close()
    assert await store.available_agents(AVAILABLE) == []
    assert brought[-1] == ("whole", [])


async def test_a_write_on_the_loop_during_a_whole_read_on_the_thread_is_read_next(
    store, monkeypatch
) -> None:
    """A whole read of a large fleet runs on the store's thread while the loop goes on
    writing: a write after its snapshot is not in what it brings, and the next read brings
    it (the agents named before the snapshot were forgotten, those after it kept)."""
    monkeypatch.setattr(sqlite_agents, "LOOP_FLEET", 0)  # every whole read on the thread
    brought = _spied(store)
    for name in ("a1", "a2"):
        await store.create_agent(agent(name, state="idle"))
    read, written = threading.Event(), threading.Event()
    whole = store._fleet.agents

    def slow_whole(rows):
        rows = list(rows)  # read: its snapshot is taken
        read.set()
        assert written.wait(10)
        return whole(rows)

    store._fleet.agents = slow_whole
    reading = asyncio.ensure_future(store.available_agents(AVAILABLE))
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, read.wait, 10)
    await store.record_state(record("a1", "active", 1), history_limit=8)  # on the loop
    written.set()
    assert ids(await reading) == {"a1", "a2"}  # as of its snapshot
    assert ids(await store.available_agents(AVAILABLE)) == {"a2"}
    assert brought[-1] == ("changed", ["a1"])
