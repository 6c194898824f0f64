"""The names of the Redis store's keys: every key starts with the store's prefix
(``opscore:`` by default), and the scripts that move the queue take theirs in a fixed order."""

from __future__ import annotations


class KeyNames:
    """Key names under the prefix ``p``."""

    p: str

    def k(self, *parts: str) -> str:
        return self.p + ":".join(parts)

    @property
    def _queue_keys(self) -> list[str]:
        return [
            self.k("q", "delayed"),
            self.k("q", "ready"),
            self.k("q", "leased"),
            self.k("q", "meta"),
        ]

    @property
    def inflight_key(self) -> str:
        """Every task in flight, scored by when a sweep may next act on it (``_due_score``)."""
        return self.k("inflight", "due")

    @property
    def _enqueue_keys(self) -> list[str]:
        """The keys the enqueue script (and a compare-and-set's ENQ) moves."""
        return [*self._queue_keys, self.k("seq", "queue"), self.k("q", "since")]

    @property
    def _ack_keys(self) -> list[str]:
        """The keys an ack moves (the ack script, a compare-and-set's ACK): leased, meta, since."""
        return [self.k("q", "leased"), self.k("q", "meta"), self.k("q", "since")]
