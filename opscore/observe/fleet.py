"""One view of the whole fleet from any replica, over a shared store.

Every replica on Redis or PostgreSQL ships its inspection log records and finished spans to a
channel in the store (``SharedTelemetry``) a few times a second, and reads what the others
shipped into its own buffers. ``GET /v1/opscore/logs``, the live stream, ``/traces/{id}``, run
timelines and the dashboard then show what every replica did, from whichever one is asked,
with reads as fast as before (they stay local). Entries also say which replicas are up, so a
rate limit is split among them: with the load balancer spreading a client's requests, the
client gets the configured rate in total, not once per replica.

A replica ships its records only while another replica is up to read them. Alone, it says
only that it is up (every ``HEARTBEAT`` seconds) and keeps its records in its outbox (the
newest ``OUTBOX``), which it ships as soon as it hears of another, so a replica that joins
sees what happened before it. Shipping every record to no one was 4% of a lone Redis
replica's CPU (21 records per three-step workflow, spans turned into JSON) and 7.5 kB per
workflow written to the store and trimmed.

``memory://`` and SQLite have no channel: one process, today's behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson

from ..errors import StorageError
from ..storage.base import SharedTelemetry
from .logs import LogBuffer
from .outbox import Outbox
from .tracing import Tracer, as_dict

logger = logging.getLogger("opscore.fleet")
OUTBOX = 20_000  # entries kept for the channel while the store is away or no one reads it
BATCH = 1000  # entries per publish
READ = 10  # batches per read (each at most TELEMETRY_BATCH entries: 1,000)
ROUNDS = 10  # publishes, and reads, per interval at most: catching up after a burst
ALIVE = 10.0  # a replica not heard of for this long is not counted as up
HEARTBEAT = 2.0


class FleetTelemetry:
    def __init__(
        self,
        channel: SharedTelemetry,
        logs: LogBuffer,
        tracer: Tracer,
        *,
        interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channel = channel
        self.logs = logs
        self.tracer = tracer
        self.interval = interval
        self.clock = clock
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._cursor: str | None = None
        self._seen: dict[str, float] = {self.origin: clock()}
        self._last_sent = 0.0
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        # records logged from now on are also shipped; of log records, no more than a log
        # buffer keeps (the same records: kept while alone, they take no memory of their own)
        self.logs.outbox = Outbox(min(OUTBOX, self.logs.records.maxlen or OUTBOX))
        self.tracer.outbox = Outbox(OUTBOX)
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        with contextlib.suppress(StorageError):
            await self.ship()  # what the last moments logged
        self.logs.outbox = None
        self.tracer.outbox = None

    def replicas(self) -> int:
        """Replicas heard of within ``ALIVE`` seconds, and this one, always: it no longer
        reads its own entries back (``passing_over``), so its own time heard is never
        renewed, and after ``ALIVE`` seconds up it had stopped counting itself."""
        now = self.clock()
        others = (t for origin, t in self._seen.items() if origin != self.origin)
        return 1 + sum(1 for seen in others if now - seen <= ALIVE)

    async def _run(self) -> None:
        while True:
            try:
                for _ in range(ROUNDS):  # catch up after a burst, a batch at a time
                    if await self.ship() < BATCH:
                        break
                for _ in range(ROUNDS):
                    if not await self.pull():
                        break
                if self._failing:
                    self._failing = False
                    logger.info("fleet telemetry recovered")
            except StorageError as exc:
                if not self._failing:  # once per outage: these lines are shipped too
                    self._failing = True
                    logger.warning("fleet telemetry paused: %s", exc.message)
            await asyncio.sleep(self.interval)

    async def ship(self) -> int:
        """Publish up to ``BATCH`` of the records not yet shipped, while another replica is
        up (otherwise only that this one is up, every ``HEARTBEAT`` seconds); returns how many
        records went."""
        log_box, span_box = self.logs.outbox, self.tracer.outbox
        logs: list[dict[str, Any]] = []
        spans: list[Any] = []
        if self.replicas() > 1:
            logs = log_box.unshared(BATCH) if log_box else []
            spans = span_box.unshared(BATCH - len(logs)) if span_box else []
        entries = [("log", _json(_log_entry(r, self.origin))) for r in logs]
        entries += [("span", _json(as_dict(s))) for s in spans]
        now = self.clock()
        if not entries and now - self._last_sent < HEARTBEAT:
            return 0
        await self.channel.publish_telemetry(self.origin, entries or [("up", "{}")])
        # only once they are in the store: a failed publish keeps them for the next try
        if log_box:
            log_box.shared(len(logs))
        if span_box:
            span_box.shared(len(spans))
        self._last_sent = now
        return len(entries)

    async def pull(self) -> bool:
        """Read what the other replicas shipped (``READ`` batches); returns whether there was
        anything to read, the reader's own batches included."""
        before = self._cursor
        first = before is None
        cursor, entries = await self.channel.read_telemetry(
            self._cursor, READ, passing_over=self.origin
        )
        self._cursor = cursor
        now = self.clock()
        logs: list[dict[str, Any]] = []
        spans: list[dict[str, Any]] = []
        for _, origin, kind, data in entries:
            if not first:
                self._seen[origin] = now
            if kind == "log":
                logs.append(orjson.loads(data))
            elif kind == "span":
                spans.append(orjson.loads(data))
        if logs:
            self.logs.ingest(logs)
        if spans:
            self.tracer.ingest(spans)
        return bool(entries) or cursor != before


def _json(entry: dict[str, Any]) -> str:
    """An entry as JSON text, with orjson: the channel carries every log record and span of
    a replica, and the standard library's encoder and decoder were about 3% of a busy Redis
    replica's CPU (a py-spy profile). What JSON cannot hold is written as its text; times
    as ISO 8601, as the API shows them."""
    return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _log_entry(record: dict[str, Any], origin: str) -> dict[str, Any]:
    """A record as another replica shows it: without this buffer's number, with the replica
    that logged it."""
    return {**{k: v for k, v in record.items() if k != "id"}, "replica": origin}
