"""Per-key token buckets: a flood from one key gets 429s, not the whole service slowed.

With replicas on a shared store, each keeps the share of the limit that is its own (the
number of replicas up comes from ``observe.fleet``).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from ..errors import RateLimitedError
from .keys import Caller


class RateLimiter:
    """``rate`` requests per second with bursts up to ``burst``; rate 0 turns it off."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        # replicas sharing the limit (observe.fleet counts them): each takes its share, so a
        # client spread over them by the load balancer gets the configured rate in total
        self.replicas: Callable[[], int] = lambda: 1

    def check(self, caller: Caller) -> None:
        if self.rate <= 0:
            return
        share = max(self.replicas(), 1)
        rate, burst = self.rate / share, max(self.burst / share, 1.0)
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(caller.name, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens < 1:
                self._buckets[caller.name] = (tokens, now)
                wait = (1 - tokens) / rate
                raise RateLimitedError(
                    f"Rate limit of {self.rate:g} requests/s exceeded for this key",
                    retry_after=math.ceil(wait),
                )
            self._buckets[caller.name] = (tokens - 1, now)
