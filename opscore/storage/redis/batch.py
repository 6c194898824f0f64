"""Commands sent together: what coroutines ask of Redis in the same turn of the event loop goes
out in one write and comes back in one read (automatic pipelining, as ioredis does it).

A command alone is not delayed: it goes out at the next turn of the loop. While a batch waits
for its replies, what is asked meanwhile queues and goes out as the next batch the moment the
last reply comes in, so under load the store's hot path (compare-and-set scripts and reads of
single records) shares each round trip among several commands.

The replies are read by an asyncio protocol on the connection's socket (``_Replies``), with
hiredis's reader, and each answers its command's future as it is parsed: no task, stream or
per-reply coroutine between the socket and the caller. A round trip alone costs 47 us of this
process's CPU, where reading through redis-py's connection (a task per batch, a
``read_response`` per reply) cost 59-60, and four commands per turn 70-73 us instead of 84-87
(``python -m bench.redis_batcher``; bench/README.md). The connection itself is still made by
redis-py's pool, so the URL's password, database and TLS settings hold as for every other
command; only its socket's reading is taken over (``_take_over``).

Commands are encoded (RESP) when they are queued, by hiredis's packer rather than redis-py's:
redis-py's costs about a third of a compare-and-set's CPU on the client (it encodes each
argument through several layers); the wire format is the same (``tests/test_redis_batch.py``),
and a value of the wrong type fails its own caller at once.

An error reply fails only its own command. A connection that breaks fails the commands sent on
it and not yet answered (redis-py's ConnectionError, which the store's guard turns into
StorageError: they may have run); commands not yet sent go out on a new connection.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from hiredis import pack_command
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, InvalidResponse

Pending = tuple[bytes, asyncio.Future[Any]]


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


class _Replies(asyncio.Protocol):
    """The connection's socket, read here: each reply, as hiredis parses it, answers the
    oldest command sent and not yet answered (Redis answers in order)."""

    def __init__(
        self, transport: asyncio.WriteTransport, on_idle: Callable[[_Replies], None]
    ) -> None:
        # decoded as the pool's clients decode (decode_responses=True); error replies built
        # as redis-py builds them (ResponseError, NoScriptError...)
        self._reader = hiredis.Reader(
            protocolError=InvalidResponse,
            replyError=BaseParser.parse_error,
            encoding="utf-8",
            errors="strict",
        )
        self.transport = transport
        self.unanswered: deque[asyncio.Future[Any]] = deque()
        self.lost = False
        self._on_idle = on_idle  # called when the last unanswered command is answered

    def send(self, batch: list[Pending]) -> None:
        self.unanswered.extend(future for _, future in batch)
        self.transport.write(b"".join(packed for packed, _ in batch))

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        unanswered = self.unanswered
        try:
            while (reply := self._reader.gets()) is not False:
                future = unanswered.popleft()
                if isinstance(reply, Exception):
                    _settle(future, error=reply)
                elif (
                    isinstance(reply, list) and reply and isinstance(reply[0], RedisConnectionError)
                ):
                    _settle(future, error=reply[0])  # as redis-py raises it; other errors
                    # inside a reply stay where they are (a script's groups: cas_groups.py)
                else:
                    _settle(future, reply)
        except Exception as exc:  # not RESP, not UTF-8, or a reply nobody asked for
            self.fail(RedisConnectionError(f"Redis answered out of protocol: {exc!r}"))
            self.transport.abort()
            return
        if not unanswered:
            self._on_idle(self)

    def eof_received(self) -> bool:
        return False  # close the transport: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError("Connection closed by server."))

    def fail(self, error: Exception) -> None:
        """Fail every command sent and not yet answered; nothing more is sent here."""
        self.lost = True
        while self.unanswered:
            _settle(self.unanswered.popleft(), error=error)


class CommandBatcher:
    """One connection of its own, taken from the pool, fed by ``call`` from any coroutine."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._connection: Any = None  # redis-py's, whose socket ``_replies`` reads
        self._replies: _Replies | None = None
        self._pending: list[Pending] = []  # asked, not yet sent
        self._flushing: asyncio.Handle | None = None
        self._connecting: asyncio.Task[None] | None = None
        self._closed = False

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Queue one command; its future is answered with the reply (or its error). A value
        that Redis cannot take raises DataError here, failing only this caller."""
        packed = pack(args)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._closed:
            future.set_exception(RedisConnectionError("Redis store closed"))
            return future
        self._pending.append((packed, future))
        if self._flushing is None:
            self._flushing = loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        """Send what is pending, at the turn after it was asked: unless a batch still waits
        for its replies (it goes when they are in), or there is no connection yet."""
        self._flushing = None
        replies = self._replies
        if replies is None or replies.lost or replies.transport.is_closing():
            if self._connecting is None and self._pending:
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        if not replies.unanswered:
            self._send(replies)

    def _send(self, replies: _Replies) -> None:
        batch, self._pending = self._pending, []
        if batch:
            replies.send(batch)

    def _idle(self, replies: _Replies) -> None:
        if replies is self._replies and self._pending:
            self._send(replies)

    async def _connect(self) -> None:
        """A fresh connection from the pool for what is pending; when none can be made, what
        is pending fails with the reason (the store is away) and the next call tries again."""
        try:
            await self._drop()
            connection = await self._pool.get_connection()
            self._connection = connection
            self._replies = replies = _take_over(connection, self._idle)
        except Exception as exc:
            pending, self._pending = self._pending, []
            for _, future in pending:
                _settle(future, error=exc)
            return
        finally:
            self._connecting = None
        self._send(replies)

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        replies, self._replies = self._replies, None
        if replies is not None:
            replies.transport.abort()
        if connection is not None:
            try:
                await connection.disconnect(nowait=True)
            finally:
                await self._pool.release(connection)

    async def close(self) -> None:
        self._closed = True
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        closed = RedisConnectionError("Redis store closed")
        pending, self._pending = self._pending, []
        for _, future in pending:
            _settle(future, error=closed)
        if self._replies is not None:
            self._replies.fail(closed)
        if self._connecting is not None:
            self._connecting.cancel()
        await self._drop()


def _take_over(connection: Any, on_idle: Callable[[_Replies], None]) -> _Replies:
    """The socket of a connection redis-py made and said hello on (AUTH, SELECT), read from
    now on by ``_Replies``. redis-py keeps its streams as ``_reader`` and ``_writer`` (5.x to
    7.x, the range requirements.txt allows); ``tests/test_redis_batch.py`` fails if that
    changes. The connection is never handed back to redis-py's reading: it is disconnected
    when dropped."""
    transport = connection._writer.transport
    replies = _Replies(transport, on_idle)
    transport.set_protocol(replies)
    return replies


def _settle(future: asyncio.Future[Any], value: Any = None, *, error: Any = None) -> None:
    if future.done():  # its caller gave up (cancelled)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
