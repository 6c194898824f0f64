"""The fleet read as what changed since the last read on PostgreSQL
(``storage/postgres/fleet.py``), on a real server: only the rows written since, a transaction
that commits after a read began read by the next one, deletions seen."""

from __future__ import annotations

import asyncpg
import pytest

from opscore.storage.postgres import PostgresStorage

from .test_storage_contract import agent, record
from .test_storage_contract import agent_ids as ids

AVAILABLE = ["idle", "unknown"]


@pytest.fixture
async def replicas(postgresql_server):
    """This replica, with the agent ids each of its reads of the fleet brought rows of, and
    another replica on the same database."""
    postgresql_server.flush()
    store, other = PostgresStorage(postgresql_server.url), PostgresStorage(postgresql_server.url)
    await store.open()
    await other.open()
    brought: list[list[str]] = []
    changed, whole = store._fleet.changed, store._fleet.agents

    def spy(apply):
        def counted(rows):
            rows = list(rows)
            brought.append([agent_id for agent_id, _ in rows])
            return apply(rows)

        return counted

    store._fleet.changed, store._fleet.agents = spy(changed), spy(whole)
    yield store, other, brought
    await other.close()
    await store.close()


async def test_a_read_brings_back_only_the_rows_written_since_the_last_one(replicas) -> None:
    store, other, brought = replicas
    for n in range(30):
        await other.create_agent(agent(f"a{n}", state="idle"))
    assert len(await store.available_agents(AVAILABLE)) == 30
    assert len(brought[-1]) == 30  # the first read: every agent
    assert len(await store.available_agents(AVAILABLE)) == 30
    assert brought[-1] == []  # nothing written since
    await other.record_state(record("a7", "active", 1), history_limit=8)
    available = await store.available_agents(AVAILABLE)
    assert brought[-1] == ["a7"]
    assert "a7" not in ids(available) and len(available) == 29


async def test_a_transaction_that_commits_after_a_read_began_is_read_by_the_next(
    replicas, postgresql_server
) -> None:
    """Transaction ids are taken in one order and commits land in another: a change whose
    transaction started before a read and committed after it has a smaller id than changes
    read since. The next read still brings it (the horizon is the oldest transaction still
    running when a read began, not the newest id seen)."""
    store, other, brought = replicas
    await other.create_agent(agent("slow", state="active"))
    await other.create_agent(agent("fast", state="active"))
    assert await store.available_agents(AVAILABLE) == []
    late = await asyncpg.connect(postgresql_server.url)
    try:
        transaction = late.transaction()
        await transaction.start()
        freed = agent("slow", state="idle").model_dump_json()
        await late.execute(
            "UPDATE opscore_agents SET state = 'idle', doc = $1 WHERE agent_id = 'slow'", freed
        )  # its transaction id is taken now, its commit comes last
        await other.record_state(record("fast", "idle", 1), history_limit=8)  # a later id
        assert ids(await store.available_agents(AVAILABLE)) == {"fast"}
        assert ids(await store.available_agents(AVAILABLE)) == {"fast"}
        await transaction.commit()
    finally:
        await late.close()
    assert ids(await store.available_agents(AVAILABLE)) == {"fast", "slow"}
    assert "slow" in brought[-1]


async def test_a_deleted_agent_makes_the_next_read_whole(replicas) -> None:
    """Nothing is left to read of a deleted row: the count of rows tells (the view holds
    more agents than the table), and the fleet is read again, every agent."""
    store, other, brought = replicas
    for name in ("a", "b", "c"):
        await other.create_agent(agent(name, state="idle"))
    await store.available_agents(AVAILABLE)
    await other.delete_agent("b")
    assert ids(await store.available_agents(AVAILABLE)) == {"a", "c"}
    assert [sorted(ids) for ids in brought[-2:]] == [[], ["a", "c"]]  # none since; then all
