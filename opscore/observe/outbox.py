"""What this replica still has to give the others (``observe.fleet``): a bounded queue that is
read first and emptied only once the store has taken the batch."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class Outbox(Generic[T]):
    def __init__(self, size: int) -> None:
        self._items: deque[T] = deque(maxlen=size)  # the oldest go first when it is full
        self._lock = threading.Lock()  # records arrive from any thread

    def add(self, item: T) -> None:
        with self._lock:
            self._items.append(item)

    def unshared(self, limit: int) -> list[T]:
        """The oldest items not yet given to the other replicas (at most ``limit``)."""
        with self._lock:
            return list(itertools.islice(self._items, limit))

    def shared(self, count: int) -> None:
        """The first ``count`` of those are now with the other replicas."""
        with self._lock:
            for _ in range(min(count, len(self._items))):
                self._items.popleft()
