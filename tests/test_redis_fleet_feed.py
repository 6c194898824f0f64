"""The fleet read from what Redis says changed (``storage/redis/fleet_feed.py``), on a real
redis-server: a read of the fleet asks for the agents written since the last one, and for the
whole fleet whenever the feed cannot be trusted (not up yet, lost, refused, a flush)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import pytest
import redis

from opscore.storage import storage_from_url
from opscore.storage.redis import fleet_feed

from .test_storage_contract import agent, record
from .test_storage_contract import agent_ids as ids

AVAILABLE = ["idle", "unknown"]


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"not in time: {what}"
        await asyncio.sleep(0.01)


async def heard(store, key: str) -> None:
    """Until the store's feed has the name of ``key`` (Redis's message came)."""
    await until(lambda: key in store._feed._named, f"Redis names {key}")


@pytest.fixture
async def two_replicas(redis_counted):
    """The counted store (this replica) with its feed up, another store on the same Redis
    (another replica), and the command counter."""
    store, calls = redis_counted
    other = storage_from_url(store.url)
    await other.open()
    assert store._feed.live
    yield store, other, calls
    await other.close()


async def test_a_read_asks_only_for_the_agents_written_since_the_last_one(two_replicas) -> None:
    store, other, calls = two_replicas
    for n in range(20):
        await other.create_agent(agent(f"a{n}", state="idle"))
    assert len(await store.available_agents(AVAILABLE)) == 20  # the first read is whole
    before = calls()
    assert len(await store.available_agents(AVAILABLE)) == 20
    assert calls() == before  # nothing written since: nothing asked

    await other.record_state(record("a3", "active", 1), history_limit=8)
    await heard(store, store.k("agent", "a3"))
    before, before_mget = calls(), calls("mget")
    available = await store.available_agents(AVAILABLE)
    assert "a3" not in ids(available) and len(available) == 19
    assert calls() - before == 1 and calls("mget") - before_mget == 1  # one MGET: no script


async def test_this_replicas_own_writes_are_read_before_redis_names_them(two_replicas) -> None:
    """A pass woken by the report that freed an agent reads that agent, even if the event
    loop has not read Redis's message yet: the store's own scripts name what they wrote."""
    store, _, _ = two_replicas
    await store.create_agent(agent("a1", state="active"))
    await heard(store, store.k("agent", "a1"))  # Redis's message of the creation came
    assert await store.available_agents(AVAILABLE) == []  # and this read took it
    assert not store._feed._named
    store._feed._heard = lambda message: None  # Redis's messages go unread from here
    await store.record_state(record("a1", "idle", 1), history_limit=8)
    assert ids(await store.available_agents(AVAILABLE)) == {"a1"}


async def test_a_list_of_agents_shows_another_replicas_write_before_redis_names_it(
    two_replicas,
) -> None:
    """An operator's list (GET /agents) reads every agent: an agent registered through
    another replica a moment ago is listed even if Redis's message of it has not been read."""
    store, other, _ = two_replicas
    await store.available_agents(AVAILABLE)
    store._feed._heard = lambda message: None
    await other.create_agent(agent("elsewhere", state="idle"))
    listed = await store.list_agents(state=None, capability=None, offset=0, limit=10)
    assert ids(listed.items) == {"elsewhere"}


async def test_a_key_written_while_its_read_is_in_flight_is_read_again(two_replicas) -> None:
    """The read may have been answered before the write Redis names meanwhile: the name is
    kept for the next read, which finds the write."""
    store, other, _ = two_replicas
    await other.create_agent(agent("a1", state="active"))
    await store.available_agents(AVAILABLE)
    await other.record_state(record("a1", "active", 1), history_limit=8)
    await heard(store, store.k("agent", "a1"))
    batched = store._batched

    async def answered_then_written(*command):
        reply = await batched(*command)  # a1 as it was: active
        if command[0] == "MGET":
            await other.record_state(record("a1", "idle", 2), history_limit=8)
            await heard(store, store.k("agent", "a1"))
        return reply

    store._batched = answered_then_written
    assert await store.available_agents(AVAILABLE) == []  # the read answered before the write
    store._batched = batched
    assert ids(await store.available_agents(AVAILABLE)) == {"a1"}


async def test_a_flush_and_a_lost_feed_make_the_next_reads_whole(two_replicas) -> None:
    store, other, calls = two_replicas
    await other.create_agent(agent("a1", state="idle"))
    await store.available_agents(AVAILABLE)
    other_client = redis.Redis.from_url(store.url, decode_responses=True)
    try:
        other_client.flushdb()
        await until(lambda: store._feed._whole, "a flush read whole")  # Redis names no key
        before = calls("evalsha")
        assert await store.available_agents(AVAILABLE) == []
        assert calls("evalsha") == before + 1

        feeds = [c for c in other_client.client_list() if c["name"] == "opscore-fleet-feed"]
        assert feeds  # the feed's connection says what it is
        for client in feeds:
            other_client.client_kill_filter(_id=client["id"])
        await until(lambda: not store._feed.live, "the feed lost")
        await other.create_agent(agent("a2", state="idle"))
        before = calls("evalsha")
        assert ids(await store.available_agents(AVAILABLE)) == {"a2"}
        assert ids(await store.available_agents(AVAILABLE)) == {"a2"}
        assert calls("evalsha") >= before + 2  # whole reads while the feed is away
        await until(lambda: store._feed.live, "the feed back")  # followed again, after a pause
        await store.available_agents(AVAILABLE)  # whole: what was written meanwhile
        await other.create_agent(agent("a3", state="idle"))
        await heard(store, store.k("agent", "a3"))
        before = calls("evalsha")
        assert ids(await store.available_agents(AVAILABLE)) == {"a2", "a3"}
        assert calls("evalsha") == before
    finally:
        other_client.close()


async def test_the_fleet_is_read_whole_every_few_seconds_anyway(two_replicas) -> None:
    store, other, calls = two_replicas
    now = [1000.0]
    store._feed.clock = lambda: now[0]
    await other.create_agent(agent("a1", state="idle"))
    await store.available_agents(AVAILABLE)
    before = calls("evalsha")
    await store.available_agents(AVAILABLE)
    assert calls("evalsha") == before
    now[0] += fleet_feed.REFRESH
    await store.available_agents(AVAILABLE)
    assert calls("evalsha") == before + 1


@contextlib.asynccontextmanager
async def store_as(redis_server, name: str, *, channels: list[str], commands: list[str]):
    """A Redis store opened as an ACL user of these permissions (every key), then closed and
    the user removed."""
    admin = redis.Redis.from_url(redis_server.url)
    admin.acl_setuser(
        name, enabled=True, passwords=["+secret"], keys=["*"], channels=channels, commands=commands
    )
    store = storage_from_url(f"redis://{name}:secret@127.0.0.1:{redis_server.port}/0")
    try:
        await store.open()
        yield store
    finally:
        await store.close()
        admin.acl_deluser(name)
        admin.close()


async def test_a_server_that_refuses_tracking_is_read_whole_at_every_pass(
    redis_server, caplog
) -> None:
    """An ACL without CLIENT (a managed Redis, a proxy): the store works as it did, reading
    the whole fleet, and says why once."""
    with caplog.at_level(logging.WARNING, logger="opscore.storage.redis"):
        opened = store_as(redis_server, "no-client", channels=["*"], commands=["+@all", "-client"])
        async with opened as store:
            assert not store._feed.live
            warned = [
                r for r in caplog.records if "does not tell of agent writes" in r.getMessage()
            ]
            assert len(warned) == 1
            await store.create_agent(agent("refused-1", state="idle"))
            assert "refused-1" in ids(await store.available_agents(AVAILABLE))
            store._feed.touched = lambda keys: None  # not even its own writes are named
            await store.record_state(record("refused-1", "active", 1), history_limit=8)
            assert "refused-1" not in ids(await store.available_agents(AVAILABLE))


async def test_the_acl_that_docs_replicas_names_is_enough_for_the_feed(redis_server) -> None:
    """docs/replicas.md names what a Redis user restricted by an ACL needs for the feed:
    a user with no other command of CLIENT and no other channel has it live."""
    commands = ["+@all", "-client", "+client|id", "+client|tracking", "+client|setname"]
    async with store_as(
        redis_server, "feed-only", channels=["__redis__:invalidate"], commands=commands
    ) as store:
        assert store._feed.live
        await store.create_agent(agent("acl-1", state="idle"))
        assert "acl-1" in ids(await store.available_agents(AVAILABLE))
        await store.delete_agent("acl-1")
