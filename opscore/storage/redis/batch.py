"""Commands sent together: what coroutines ask of Redis in the same turn of the event loop goes
out in one write and comes back in one read (automatic pipelining, as ioredis does it).

A round trip on its own costs about 60-95 us of CPU in redis-py (socket write, wake-up, read);
in a pipeline of 4 it is about 31 us per command and of 8 about 18 us
(``python -m bench.redis_clients``). Under load the store's hot path (compare-and-set scripts
and reads of single records) has several commands ready at once, so they share the cost. A
command alone is not delayed: it goes out at the next turn of the loop.

Commands are encoded (RESP) when they are queued, by hiredis's packer rather than redis-py's:
redis-py's costs about a third of a compare-and-set's CPU on the client (it encodes each
argument through several layers); the wire format is the same (``tests/test_redis_batch.py``),
and a value of the wrong type fails its own caller at once.

Each batch is written, then its replies are read in order. An error reply fails only its own
command; a broken connection fails the batch in flight (redis-py's ConnectionError, which the
store's guard turns into StorageError), and the next batch connects again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hiredis import pack_command
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError

MAX_BATCH = 128  # commands per write at most, so one batch never holds the connection long


def pack(args: tuple[Any, ...]) -> bytes:
    """One command in RESP, as redis-py's encoder would write it (str as UTF-8, int and float
    by repr, bytes as they are), by hiredis's packer (C, a third of the CPU of the same in
    Python); anything else (bool included) is a DataError, as redis-py raises."""
    try:
        return pack_command(args)
    except TypeError:
        bad = next(
            (
                a
                for a in args
                if isinstance(a, bool) or not isinstance(a, str | bytes | int | float)
            ),
            None,
        )
        raise DataError(
            f"Invalid input of type: '{type(bad).__name__}'. "
            "Convert to a bytes, string, int or float first."
        ) from None


class CommandBatcher:
    """One connection of its own, taken from the pool, fed by ``call`` from any coroutine."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._connection: Any = None
        self._pending: list[tuple[bytes, asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None  # while one sends what is pending

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; its future is answered with the reply (or its error). A value
        that Redis cannot take raises DataError here, failing only this caller."""
        packed = pack(args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((packed, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._send(batch)
        finally:
            self._drainer = None

    async def _send(self, batch: list[tuple[bytes, asyncio.Future[Any]]]) -> None:
        answered = 0
        try:
            if self._connection is None:
                self._connection = await self._pool.get_connection()
            connection = self._connection
            await connection.send_packed_command(
                [packed for packed, _ in batch], check_health=False
            )
            for _, future in batch:
                try:
                    reply = await connection.read_response()
                except ResponseError as exc:  # this command's own error; the stream is intact
                    answered += 1
                    _settle(future, error=exc)
                    continue
                answered += 1
                _settle(future, reply)
        except BaseException as exc:
            # a broken connection (or a cancelled read): what was not answered fails, and the
            # connection starts afresh for the next batch
            for _, future in batch[answered:]:
                _settle(future, error=exc if isinstance(exc, Exception) else RedisConnectionError())
            await self._drop()
            if not isinstance(exc, Exception):
                raise

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.disconnect(nowait=True)
            finally:
                await self._pool.release(connection)

    async def close(self) -> None:
        for _, future in self._pending:
            _settle(future, error=RedisConnectionError("Redis store closed"))
        self._pending.clear()
        await self._drop()


def _settle(future: asyncio.Future[Any], value: Any = None, *, error: Any = None) -> None:
    if future.done():  # its caller gave up (cancelled)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
