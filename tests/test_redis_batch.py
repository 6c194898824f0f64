"""The Redis store's batched commands (storage/redis/batch.py) against a real redis-server:
commands of one turn of the event loop share a write, an error reply fails only its own
command, and a lost connection fails the batch in flight and the next one connects again.
(Scripts Redis forgot are loaded again: tests/test_storage_contract.py.)"""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.exceptions import DataError

from opscore.storage.redis.batch import CommandBatcher, pack


@pytest.fixture
async def pool(redis_server):
    import redis.asyncio as aioredis

    redis_server.flush()
    pool = aioredis.ConnectionPool.from_url(redis_server.url, decode_responses=True)
    yield pool
    await pool.disconnect()


def _admin(redis_server) -> redis.Redis:  # a separate client, for what the test does to Redis
    return redis.Redis.from_url(redis_server.url, decode_responses=True)


async def test_commands_of_one_turn_share_one_write(pool, monkeypatch) -> None:
    batcher = CommandBatcher(pool)
    writes: list[int] = []
    send = batcher._send

    async def counted(batch):
        writes.append(len(batch))
        await send(batch)

    monkeypatch.setattr(batcher, "_send", counted)
    try:
        replies = await asyncio.gather(*(batcher.call("INCR", "n") for _ in range(50)))
        assert replies == list(range(1, 51))  # in the order they were asked
        assert writes == [50]
        assert await batcher.call("GET", "n") == "50"  # alone, it goes out at once
        assert writes == [50, 1]
    finally:
        await batcher.close()


async def test_an_error_reply_fails_only_its_own_command(pool) -> None:
    batcher = CommandBatcher(pool)
    try:
        await batcher.call("SET", "text", "not a number")
        results = await asyncio.gather(
            batcher.call("INCR", "n"),
            batcher.call("INCR", "text"),
            batcher.call("GET", "text"),
            return_exceptions=True,
        )
        assert results[0] == 1
        assert isinstance(results[1], redis.ResponseError)
        assert results[2] == "not a number"
    finally:
        await batcher.close()


async def test_a_lost_connection_fails_the_batch_and_the_next_call_connects_again(
    redis_server, pool
) -> None:
    batcher = CommandBatcher(pool)
    admin = _admin(redis_server)
    try:
        assert await batcher.call("INCR", "n") == 1
        admin.client_kill_filter(_type="normal", skipme=True)
        with pytest.raises(redis.ConnectionError):
            await batcher.call("INCR", "n")
        assert await batcher.call("INCR", "n") == 2  # the failed INCR never ran
    finally:
        admin.close()
        await batcher.close()


PACKED_EXAMPLES = [
    ("GET", "key"),
    ("SET", "ключ", "значение ✓", "EX", 30),
    ("ZADD", "z", 1.5, "a", -3, "b", 0.1 + 0.2, "c", 2**60, "d"),
    ("SET", "empty", ""),
    ("SET", b"raw\r\nbytes", memoryview(b"\x00\xff")),
    ("EVALSHA", "a" * 40, 1, "k", "=" + "x" * 10_000, "1", "{}"),
]


@pytest.mark.parametrize("args", PACKED_EXAMPLES, ids=lambda a: str(a[0]))
def test_commands_are_packed_as_redis_py_packs_them(args) -> None:
    from redis.asyncio.connection import Connection

    assert pack(args) == b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize("bad", [True, None, {"a": 1}, [1]])
async def test_a_value_redis_cannot_take_fails_only_its_caller(pool, bad) -> None:
    batcher = CommandBatcher(pool)
    try:
        with pytest.raises(DataError):
            batcher.call("SET", "k", bad)
        assert await batcher.call("SET", "k", "fine") == "OK"  # the connection is intact
        assert await batcher.call("GET", "k") == "fine"
    finally:
        await batcher.close()
