"""What reading the fleet costs on each store as it grows: the dispatcher's read of the
available agents (at each pass that has work) and the metrics' count of agents per state (at
each scrape), in this process.

    python -m bench.fleet_reads [--agents 10000] [--reads 10] [--changed 1]
        [--stores memory,sqlite,redis,postgresql]

Per store (a fresh server for each): ``--agents`` idle agents saved, then the mean time of
``--reads`` calls, after one that warms the process up, of:

- ``available_agents``: every available agent, as a dispatch pass reads them, with
  ``--changed`` agents' state reports written before each read (not timed): a pass under
  load, where a few agents changed since the last one;
- ``available_agents_whole``: the peer, the same read made whole (every agent's record from
  the store), as every read was before the reads of what changed (Redis: ``fleet_feed.py``;
  PostgreSQL: ``postgres/fleet.py``; SQLite: ``sqlite/fleet.py``); on memory://, the same
  read as above;
- ``agents_by_state``: the count per state a ``/metrics`` scrape makes;
- ``paged``: the peer, the same count made by paging through every agent 1,000 at a time (as
  the metrics did before ``agents_by_state``).

Prints one JSON line per store, then all of them.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opscore.models import Agent, StateRecord, utcnow
from opscore.storage import storage_from_url
from opscore.storage.base import Storage

from .stores import each_store

SAVED_AT_ONCE = 200  # agents saved concurrently (a pipeline each on Redis: bounded clients)


async def _paged(store: Storage) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    offset = 0
    while True:
        page = await store.list_agents(state=None, capability=None, offset=offset, limit=1000)
        for agent in page.items:
            counts[agent.state] = counts.get(agent.state, 0) + 1
        offset += len(page.items)
        if offset >= page.total or not page.items:
            return counts


async def _timed(
    call: Callable[[], Awaitable[Any]],
    reads: int,
    before: Callable[[], Awaitable[Any]] | None = None,
) -> float:
    """Milliseconds per call, the mean of ``reads`` after one to warm up (``before`` each
    call, not timed)."""
    await call()
    spent = 0.0
    for _ in range(reads):
        if before is not None:
            await before()
        start = time.perf_counter()
        await call()
        spent += time.perf_counter() - start
    return round(spent / reads * 1000, 2)


def _whole(store: Storage) -> None:
    """The store's next read of the fleet reads every agent (the peer of a read of what
    changed): what it holds of the last read forgotten."""
    feed = getattr(store, "_feed", None)  # Redis
    if feed is not None:
        feed.failed()
    since = getattr(store, "_fleet_since", None)  # PostgreSQL
    if since is not None:
        since.horizon = None
    changes = getattr(store, "_fleet_changes", None)  # SQLite
    if changes is not None:
        changes.forget()


async def _one_store(url: str, agents: int, reads: int, changed: int) -> dict[str, Any]:
    store = storage_from_url(url)
    await store.open()
    try:
        now = utcnow()
        for first in range(0, agents, SAVED_AT_ONCE):
            await asyncio.gather(
                *(
                    store.save_agent(
                        Agent(
                            agent_id=f"agent-{i:06d}",
                            agent_name="fleet",
                            capabilities=["noop"],
                            state="idle",
                            contact_endpoint=f"http://127.0.0.1:9/agents/{i}",
                            last_seen=now,
                            registered_at=now,
                            updated_at=now,
                        )
                    )
                    for i in range(first, min(first + SAVED_AT_ONCE, agents))
                )
            )
        reported = [0]

        async def reports() -> None:  # ``changed`` agents report idle again
            for _ in range(changed):
                reported[0] += 1
                await store.record_state(
                    StateRecord(
                        agent_id=f"agent-{reported[0] % agents:06d}",
                        state="idle",
                        timestamp=utcnow(),
                        received_at=utcnow(),
                    ),
                    history_limit=8,
                )

        async def whole() -> None:
            await reports()
            _whole(store)

        available = lambda: store.available_agents({"idle"})  # noqa: E731
        return {
            "agents": agents,
            "changed": changed,
            "available_agents_ms": await _timed(available, reads, reports),
            "available_agents_whole_ms": await _timed(available, reads, whole),
            "agents_by_state_ms": await _timed(store.agents_by_state, reads),
            "paged_ms": await _timed(lambda: _paged(store), reads),
        }
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--reads", type=int, default=10)
    parser.add_argument("--changed", type=int, default=1, help="agents written before each read")
    parser.add_argument("--stores", default="memory,sqlite,redis,postgresql")
    args = parser.parse_args()
    each_store(
        args.stores,
        lambda _, url: asyncio.run(_one_store(url, args.agents, args.reads, args.changed)),
    )


if __name__ == "__main__":
    main()
