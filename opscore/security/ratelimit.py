"""Per-key token buckets: a flood from one key gets 429s, not the whole service slowed."""

from __future__ import annotations

import math
import threading
import time

from ..errors import RateLimitedError
from .keys import Caller


class RateLimiter:
    """``rate`` requests per second with bursts up to ``burst``; rate 0 turns it off."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, caller: Caller) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(caller.name, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[caller.name] = (tokens, now)
                wait = (1 - tokens) / self.rate
                raise RateLimitedError(
                    f"Rate limit of {self.rate:g} requests/s exceeded for this key",
                    retry_after=math.ceil(wait),
                )
            self._buckets[caller.name] = (tokens - 1, now)
