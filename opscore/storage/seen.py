"""What this process last read or wrote per record, the guess that lets a compare-and-set
on a shared store (Redis, PostgreSQL) cost one round trip instead of a read and a write.

Never trusted: the store writes only if the record still holds exactly the guessed value, and
answers the current one otherwise. A stale guess costs a retry, never a lost update.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

UNSEEN: Any = object()

# How many records' guesses a process keeps (a few MB: records are ~1 KB of JSON). A run
# writes its tasks and its session at its start, and its later steps need their guesses only
# when their turn comes: with a backlog of runs, those come in the order the runs started,
# the least recently used order, so a keep smaller than the backlog's records loses every
# one of them (2,000 runs queued at once: 4,096 cost Redis 10 more commands per workflow).
GUESSES = 16384


class Seen:
    """The raw values this process last read or wrote, per key (least recently used go
    first). Only a guess for compare-and-set: the script checks it against the store."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[str, str | None] = OrderedDict()

    def get(self, key: str) -> Any:
        value = self._values.get(key, UNSEEN)
        if value is not UNSEEN:
            self._values.move_to_end(key)
        return value

    def put(self, key: str, raw: str | None) -> None:
        self._values[key] = raw
        self._values.move_to_end(key)
        if len(self._values) > self.size:
            self._values.popitem(last=False)

    def has_room_for(self, count: int) -> bool:
        """Whether ``count`` more guesses (a read of the whole fleet) would leave room for the
        others: at most half of what is kept. A larger batch would only push every other
        guess out, at each read, and its own would not last until they are used."""
        return 2 * count <= self.size

    def forget(self, *keys: str) -> None:
        for key in keys:
            self._values.pop(key, None)
