"""The Redis store's batched commands (storage/redis/batch.py) against a real redis-server:
commands of one turn of the event loop share a write, and those asked while a batch waits for
its replies go out together when they are in; an error reply fails only its own command; a
connection lost under commands in flight fails them, one found lost before use is replaced
without failing anyone, and the next call after a failure connects again.
(Scripts Redis forgot are loaded again: tests/test_storage_contract.py.)"""

from __future__ import annotations

import asyncio

import pytest
import redis
from redis.exceptions import DataError

from opscore.storage.redis import batch
from opscore.storage.redis.batch import CommandBatcher, pack


@pytest.fixture
async def pool(redis_server):
    import redis.asyncio as aioredis

    redis_server.flush()
    pool = aioredis.ConnectionPool.from_url(redis_server.url, decode_responses=True)
    yield pool
    await pool.disconnect()


@pytest.fixture
async def batcher(pool):
    batcher = CommandBatcher(pool)
    yield batcher
    await batcher.close()


@pytest.fixture
def admin(redis_server):
    """A separate client, for what the test does to Redis."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    client.close()


async def test_commands_of_one_turn_share_one_write(batcher, redis_writes) -> None:
    replies = await asyncio.gather(*(batcher.call("INCR", "n") for _ in range(50)))
    assert replies == list(range(1, 51))  # in the order they were asked
    assert redis_writes == [50]
    assert await batcher.call("GET", "n") == "50"  # alone, it goes out at once
    assert redis_writes == [50, 1]


async def test_commands_asked_while_a_batch_waits_go_out_together_after_it(
    batcher, redis_writes
) -> None:
    await batcher.call("PING")
    # the server holds this one's reply for 1 s: every INCR below is asked meanwhile, in
    # a turn of its own, and they leave in one write when the reply is in
    waiting = batcher.call("BLPOP", "nothing", 1)
    await asyncio.sleep(0)
    incrs = []
    for _ in range(10):
        incrs.append(batcher.call("INCR", "n"))
        await asyncio.sleep(0)
    assert await waiting is None
    assert await asyncio.gather(*incrs) == list(range(1, 11))
    assert redis_writes == [1, 1, 10]


async def test_an_error_reply_fails_only_its_own_command(batcher) -> None:
    await batcher.call("SET", "text", "not a number")
    results = await asyncio.gather(
        batcher.call("INCR", "n"),
        batcher.call("INCR", "text"),
        batcher.call("GET", "text"),
        batcher.call("EVALSHA", "0" * 40, 0),
        return_exceptions=True,
    )
    assert results[0] == 1
    assert isinstance(results[1], redis.ResponseError)
    assert results[2] == "not a number"
    assert isinstance(results[3], redis.exceptions.NoScriptError)  # as redis-py names it


async def test_a_connection_lost_under_commands_fails_them_and_the_next_call_connects_again(
    batcher, admin
) -> None:
    assert await batcher.call("INCR", "n") == 1
    in_flight = batcher.call("BLPOP", "nothing", 30)
    await asyncio.sleep(0.1)  # sent: Redis holds it
    await asyncio.to_thread(admin.client_kill_filter, _type="normal", skipme=True)
    with pytest.raises(redis.ConnectionError):
        await asyncio.wait_for(in_flight, 10)  # it may have run: its caller must know
    assert await asyncio.wait_for(batcher.call("INCR", "n"), 10) == 2


async def test_a_connection_found_lost_before_use_is_replaced_without_failing_anyone(
    batcher, admin
) -> None:
    assert await batcher.call("INCR", "n") == 1
    replies = batcher._replies
    await asyncio.to_thread(admin.client_kill_filter, _type="normal", skipme=True)
    for _ in range(500):  # until this process has seen the connection close (5 s at most)
        if replies.lost:
            break
        await asyncio.sleep(0.01)
    assert replies.lost
    # nothing was sent on it: sent afresh (bounded: written to the closed one, it would
    # never be answered)
    assert await asyncio.wait_for(batcher.call("INCR", "n"), 10) == 2


async def test_a_store_that_is_away_fails_each_call_until_it_is_back(tmp_path) -> None:
    import redis.asyncio as aioredis

    from .storage_servers import RedisServer, require_redis

    require_redis()
    server = RedisServer(tmp_path).start()  # its own: this test stops it
    pool = aioredis.ConnectionPool.from_url(server.url, decode_responses=True)
    batcher = CommandBatcher(pool)
    try:
        assert await batcher.call("SET", "k", "v") == "OK"
        server.stop()
        with pytest.raises(redis.ConnectionError):
            await asyncio.wait_for(batcher.call("GET", "k"), 10)
        with pytest.raises(redis.ConnectionError):  # connecting is refused
            await asyncio.wait_for(batcher.call("GET", "k"), 10)
        server.start()
        assert await asyncio.wait_for(batcher.call("SET", "k", "again"), 10) == "OK"
    finally:
        await batcher.close()
        await pool.disconnect()
        server.stop()


async def test_close_fails_what_waits_and_what_is_asked_after(pool) -> None:
    batcher = CommandBatcher(pool)
    await batcher.call("PING")
    waiting = batcher.call("BLPOP", "nothing", 30)
    await asyncio.sleep(0.1)
    await batcher.close()
    with pytest.raises(redis.ConnectionError):
        await asyncio.wait_for(waiting, 10)
    with pytest.raises(redis.ConnectionError):
        await batcher.call("PING")


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
async def test_a_value_redis_cannot_take_fails_only_its_caller(batcher, bad) -> None:
    with pytest.raises(DataError):
        batcher.call("SET", "k", bad)
    assert await batcher.call("SET", "k", "fine") == "OK"  # the connection is intact
    assert await batcher.call("GET", "k") == "fine"


class _RecordingTransport(asyncio.WriteTransport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


@pytest.mark.parametrize(
    "answer",
    [b"?not RESP\r\n", b"+OK\r\n+OK\r\n+EXTRA\r\n", b"$2\r\n\xff\xfe\r\n"],
    ids=["not-resp", "a-reply-nobody-asked-for", "not-utf-8"],
)
async def test_an_answer_out_of_protocol_fails_what_waits_and_drops_the_connection(
    answer,
) -> None:
    transport = _RecordingTransport()
    idle: list[object] = []
    replies = batch._Replies(transport, idle.append)
    loop = asyncio.get_running_loop()
    futures = [loop.create_future(), loop.create_future()]
    replies.send([(pack(("GET", "a")), futures[0]), (pack(("GET", "b")), futures[1])])
    assert transport.written == [pack(("GET", "a")) + pack(("GET", "b"))]
    replies.data_received(answer)
    assert transport.aborted and replies.lost
    for future in futures:
        if future.done() and future.exception() is None:
            continue  # answered before the fault (the "+OK"s)
        with pytest.raises(redis.ConnectionError, match="out of protocol"):
            future.result()
    assert idle == []  # nothing more is sent on it
