"""The last hour minute by minute, for the console's charts: tasks completed and failed, runs
ended, and the queue's depth.

Prometheus counters say how much since start; a chart needs how much per minute, and the
console cannot wait an hour of its own sampling before it draws one. So this keeps sixty
one-minute buckets in memory, filled by the same task events as the metrics, and samples the
queue depth now and then from a sweep. Each replica keeps its own: with several replicas the
console shows the one it talks to (the queue depth is the store's, so it is the fleet's).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

MINUTES = 60
QUEUE_SAMPLE_SECONDS = 10.0
COUNTED = ("completed", "failed", "runs_completed", "runs_failed", "runs_cancelled")


@dataclass
class Minute:
    start: int  # unix minute
    counts: dict[str, int] = field(default_factory=dict)
    queue_depth: int | None = None


class Activity:
    """Sixty minutes of counts; cheap enough to call on every task event."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._minutes: deque[Minute] = deque(maxlen=MINUTES)
        self._last_sample = 0.0

    def _bucket(self) -> Minute:
        now = int(self.clock() // 60)
        if not self._minutes or self._minutes[-1].start != now:
            self._minutes.append(Minute(now))
        return self._minutes[-1]

    def count(self, what: str, n: int = 1) -> None:
        counts = self._bucket().counts
        counts[what] = counts.get(what, 0) + n

    async def sample(self, queue_depth: Callable[[], Awaitable[int]]) -> None:
        """Record the queue depth, at most every ``QUEUE_SAMPLE_SECONDS`` (a sweep calls it)."""
        now = self.clock()
        if now - self._last_sample < QUEUE_SAMPLE_SECONDS:
            return
        self._last_sample = now
        depth = await queue_depth()
        bucket = self._bucket()
        bucket.queue_depth = max(depth, bucket.queue_depth or 0)

    def last(self, minutes: int = MINUTES) -> list[dict[str, Any]]:
        """One entry per minute, oldest first, minutes without events included as zeros."""
        minutes = max(1, min(minutes, MINUTES))
        now = int(self.clock() // 60)
        kept = {m.start: m for m in self._minutes}
        series = []
        for start in range(now - minutes + 1, now + 1):
            bucket = kept.get(start)
            entry: dict[str, Any] = {
                "at": datetime.fromtimestamp(start * 60, UTC).isoformat(),
                **{what: (bucket.counts.get(what, 0) if bucket else 0) for what in COUNTED},
                "queue_depth": bucket.queue_depth if bucket else None,
            }
            series.append(entry)
        return series
