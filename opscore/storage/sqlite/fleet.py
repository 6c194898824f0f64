"""The fleet read as what changed since the last read, on SQLite.

The dispatcher reads the available agents at every pass that has work. Each read was every
available agent's row: 10,000 idle agents cost 17-29 ms at every pass (``bench.fleet_reads``),
and one workflow took 115 ms with them, where Redis and PostgreSQL, which read only what
changed, took 14 and 26 (``bench/README.md``). A read now brings only the agents this process
wrote since the last one, and the view of the fleet (``storage/fleet.py``) answers for the
rest, as long as no one else can have written any.

Who else wrote is told by SQLite itself, with no column, trigger or counter row (a counter
would cost every agent write a page more in the WAL):

- every agent write of this process goes through ``_put_agent`` or ``delete_agent``, which
  name the agent here (``wrote``);
- ``PRAGMA data_version`` on the event loop's connection changes when any *other*
  connection commits (another process on the file, or this process's own thread, where the
  calls that found the file locked and the long writes run), never for that connection's own
  commits, and not for checkpoints. Read first in a read transaction, it is the value of
  that transaction's snapshot;
- so a read whose snapshot shows the version of the last read's has seen nothing but the
  loop connection's own writes, and those agents are named here: it reads their rows, by id.
  When the version moved, the fleet is read whole, as before; with two processes writing
  one file that is every read, as it was.

A whole read takes the version, and the agents named so far, before its own snapshot (it may
run on the store's thread, while the loop goes on writing): what is written after that shows
at the next read, by name or by version, so the view never misses a write; at worst a read
is whole once more than it had to be.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Collection

# agents named at most for a read by id, on the event loop (one statement: below SQLite's
# bound on parameters, 999 before 3.32); more (a burst of registrations) and the fleet is
# read whole, on the store's thread when it is large
NAMED_ON_LOOP = 256


class FleetChanges:
    """The agents this process wrote since its last read of the fleet, and the event loop
    connection's ``data_version`` as of that read (None: the next read is whole)."""

    def __init__(self) -> None:
        self.version: int | None = None
        self.states: frozenset[str] | None = None  # the states the view holds
        self._written: set[str] = set()
        # one read at a time: a whole read that ends after a read of what changed would put
        # back older records
        self.lock = asyncio.Lock()

    def wrote(self, agent_id: str) -> None:
        """``agent_id``'s record was written (or deleted) by this process, on either of its
        connections; called inside the write's transaction, before its commit."""
        self._written.add(agent_id)

    def forget(self) -> None:
        """The next read is whole (the store was opened, maybe again, maybe on another event
        loop: the lock is made anew)."""
        self.version = None
        self.lock = asyncio.Lock()

    def follows(self, states: frozenset[str]) -> bool:
        """Whether a read of ``states`` may bring only what changed."""
        return self.version is not None and self.states == states

    def start_whole(self, db: sqlite3.Connection) -> int:
        """Before a whole read's snapshot: the version to read on from, and the agents named
        so far forgotten (that read brings them)."""
        self.version = None  # until the whole read is applied: a failed one leaves it whole
        self._written = set()
        return data_version(db)

    def whole_read(self, version: int, states: frozenset[str]) -> None:
        self.version, self.states = version, states

    def changed_rows(
        self, db: sqlite3.Connection, states: Collection[str]
    ) -> list[tuple[str, str | None]] | None:
        """In a read transaction on the loop's connection: the rows of the agents written
        since the last read (JSON, or None for an agent gone or no longer in ``states``), or
        None when another connection committed since: the fleet must be read whole."""
        version = data_version(db)  # first: it starts the snapshot the rows are read from
        if version != self.version or len(self._written) > NAMED_ON_LOOP:
            return None
        names, self._written = self._written, set()
        if not names:
            return []
        ids = list(names)
        marks = ",".join("?" * len(ids))
        found = {
            agent_id: (state, doc)
            for agent_id, state, doc in db.execute(
                f"SELECT agent_id, state, doc FROM agents WHERE agent_id IN ({marks})", ids
            )
        }
        rows: list[tuple[str, str | None]] = []
        for agent_id in ids:
            state, doc = found.get(agent_id, (None, None))
            rows.append((agent_id, doc if state in states else None))
        return rows


def data_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA data_version").fetchone()[0]
    return version
