"""Loaded by ``bench.loop_time`` into the Ops-Core process it starts (on ``PYTHONPATH``), never
by Ops-Core itself: it stamps each ``select`` of the event loop (wall clock and the thread's
CPU time before it, and the wall clock after) and each socket write (its wall and CPU time),
and writes them as JSON to ``$OPSCORE_LOOP_PROBE`` on SIGUSR1. A bounded ring of stamps: the
probe must not change the memory of what it measures by more than a few MB."""

from __future__ import annotations

import asyncio.selector_events
import collections
import json
import os
import selectors
import signal
import time
from typing import Any

_OUT = os.environ.get("OPSCORE_LOOP_PROBE", "")
KEEP = 200_000  # stamps of each kind (about 10 MB at most)

if _OUT:
    _selects: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=KEEP)
    _writes: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=KEEP)
    _select = selectors.EpollSelector.select
    _transport = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
    _write = _transport.write

    def select(self: selectors.EpollSelector, timeout: float | None = None) -> Any:
        start, cpu = time.time(), time.thread_time()
        ready = _select(self, timeout)
        _selects.append((start, time.time(), cpu))
        return ready

    def write(self: Any, data: Any) -> None:
        start, cpu = time.time(), time.thread_time()
        _write(self, data)
        _writes.append((start, time.time() - start, time.thread_time() - cpu))

    def dump(*_: object) -> None:
        with open(_OUT, "w") as f:
            json.dump({"selects": list(_selects), "writes": list(_writes)}, f)

    selectors.EpollSelector.select = select  # type: ignore[method-assign,assignment]
    _transport.write = write
    signal.signal(signal.SIGUSR1, dump)
