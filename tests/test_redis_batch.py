"""The Redis store's batched commands (storage/redis/batch.py) against a real redis-server:
commands of one turn of the event loop share a write, an error reply fails only its own
command, a lost connection fails the batch in flight and the next one connects again, and
scripts Redis forgot (a restart, SCRIPT FLUSH) are loaded again."""

from __future__ import annotations

import asyncio

import pytest
import redis

from opscore.errors import StorageError
from opscore.models import TaskRun, TaskStatus, utcnow
from opscore.storage import storage_from_url
from opscore.storage.redis.batch import CommandBatcher


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


async def test_the_store_loads_scripts_again_that_redis_forgot(redis_server) -> None:
    redis_server.flush()
    store = storage_from_url(redis_server.url)
    await store.open()
    admin = _admin(redis_server)
    try:
        task = TaskRun(
            task_id="t1",
            session_id="s1",
            step_id="a",
            timeout_seconds=5,
            max_attempts=1,
            backoff_seconds=1,
            max_backoff_seconds=1,
            created_at=utcnow(),
        )
        await store.save_tasks([task])
        admin.script_flush()
        moved = await store.update_task("t1", {"status": TaskStatus.QUEUED})
        assert moved is not None and moved.status == TaskStatus.QUEUED
        assert (await store.get_task("t1")).status == TaskStatus.QUEUED
    finally:
        admin.close()
        await store.close()
    with pytest.raises(StorageError, match="not open"):
        await store.get_task("t1")
