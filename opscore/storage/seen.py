"""What this process last read or wrote per record, the guess that lets a compare-and-set
on a shared store (Redis, PostgreSQL) cost one round trip instead of a read and a write.

Never trusted: the store writes only if the record still holds exactly the guessed value, and
answers the current one otherwise. A stale guess costs a retry, never a lost update.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

UNSEEN: Any = object()

# How many records' guesses a process keeps. A run writes its tasks and its session at its
# start, and its later steps need their guesses only when their turn comes: with a backlog of
# runs, those come in the order the runs started, the least recently used order, so a keep
# smaller than the backlog's records loses every one of them (2,000 runs queued at once:
# 4,096 cost Redis 10 more commands per workflow; 6,000 at once: 16,384 cost 5.5 more, 63.9
# in all against 58.4 with this count). With records of a kilobyte or more, the byte cap
# below is reached first.
GUESSES = 65536
# ... and how many bytes of JSON at most (records are 1-1.5 KB: some 45,000 fit). Large
# results would otherwise make the same count cost gigabytes; a record larger than a 64th
# of this is not kept (its next change reads it first).
GUESS_BYTES = 64 * 2**20
# The most agents a read of the fleet keeps guesses of (what half of 4,096 allowed before).
FLEET_GUESSES = 2048


class Seen:
    """The raw values this process last read or wrote, per key (least recently used go
    first), within ``size`` keys and ``max_bytes`` of values. Only a guess for
    compare-and-set: the script checks it against the store."""

    def __init__(self, size: int, max_bytes: int = GUESS_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._bytes = 0
        self._values: OrderedDict[str, str | None] = OrderedDict()

    def get(self, key: str) -> Any:
        value = self._values.get(key, UNSEEN)
        if value is not UNSEEN:
            self._values.move_to_end(key)
        return value

    def put(self, key: str, raw: str | None) -> None:
        if self._values.get(key, UNSEEN) == raw:
            # the guess already held (a whole read of the fleet puts every agent, most of
            # them unchanged): only its place in the order moves
            self._values.move_to_end(key)
            return
        self.forget(key)
        weight = len(raw) if raw is not None else 0
        if weight > self.max_bytes // 64:
            return  # too large to keep: no guess, rather than a stale one
        self._values[key] = raw
        self._bytes += weight
        while len(self._values) > self.size or self._bytes > self.max_bytes:
            _, old = self._values.popitem(last=False)
            self._bytes -= len(old) if old is not None else 0

    def has_room_for(self, count: int) -> bool:
        """Whether ``count`` more guesses (a read of the whole fleet) are worth keeping: at
        most half of what is kept (a larger batch would only push every other guess out, at
        each read, and its own would not last until they are used), and at most
        ``FLEET_GUESSES``: each read puts them all again, and a pass over a larger fleet
        would pay milliseconds for it (~0.45 µs a changed guess, 0.19 an unchanged one)."""
        return count <= min(self.size // 2, FLEET_GUESSES)

    def forget(self, *keys: str) -> None:
        for key in keys:
            old = self._values.pop(key, UNSEEN)
            if old is not UNSEEN and old is not None:
                self._bytes -= len(old)
