"""What reading runs costs on each store when many are kept: a list filtered by workflow (the
console's and the CLI's runs of one workflow) and the oldest queued run of a limited workflow
(what ``maxConcurrentRuns`` admits at every run's end), in this process.

    python -m bench.session_reads [--sessions 10000] [--queued 2000] [--reads 10]
                                  [--stores memory,sqlite,redis,postgresql]

Per store (a fresh server for each): ``--sessions`` finished runs of 50 workflows (a 400-byte
payload each; 10,000 is the default retention), then ``--queued`` runs waiting, half of a
limited workflow and half of another, in turn. Then the mean time of ``--reads`` calls,
after one that warms the process up, of:

- ``filtered_list``: ``list_sessions(workflow_id=...)``, a page of 20;
- ``oldest_queued``: ``oldest_session``, the read admissions make;
- ``oldest_by_pages``: the peer, the same answer found as admissions found it before
  (``list_sessions`` of the workflow's queued runs, newest first, then again at the offset
  of the last);
- ``retention_sweep``: ``prune_finished`` by age with a cut-off older than every run, so
  that each call reads every finished run's end and removes nothing;
- on Redis, ``parsed_whole``: the peer of ``filtered_list`` and ``retention_sweep``, the
  list as Redis made it before (every document of the index read in one reply and parsed,
  then filtered), which the sweep's read of every run's end was too.

Prints one JSON line per store, then all of them.
"""

from __future__ import annotations

import argparse
import asyncio
from datetime import timedelta
from typing import Any

from opscore.models import Session, SessionStatus, utcnow
from opscore.storage import storage_from_url
from opscore.storage.base import Storage
from opscore.storage.parsed import PARSED

from .fleet_reads import _timed
from .stores import each_store

SAVED_AT_ONCE = 200


async def _save_all(store: Storage, sessions: list[Session]) -> None:
    for first in range(0, len(sessions), SAVED_AT_ONCE):
        await asyncio.gather(
            *(store.save_session(s) for s in sessions[first : first + SAVED_AT_ONCE])
        )


def _runs(finished: int, queued: int) -> list[Session]:
    now = utcnow()
    payload = {"text": "x" * 400}
    done = [
        Session(
            session_id=f"done-{i:07d}",
            workflow_id=f"wf{i % 50}",
            status=SessionStatus.COMPLETED,
            initial_payload=payload,
            created_at=now,
            updated_at=now,
            finished_at=now,
        )
        for i in range(finished)
    ]
    waiting = [
        Session(
            session_id=f"wait-{i:07d}",
            workflow_id="limited" if i % 2 else "other",
            status=SessionStatus.QUEUED,
            initial_payload=payload,
            created_at=now,
            updated_at=now,
        )
        for i in range(queued)
    ]
    return done + waiting


async def _oldest_by_pages(store: Storage) -> Session | None:
    """What ``RunAdmissions`` did before ``oldest_session``."""
    args: dict[str, Any] = {"status": "queued", "workflow_id": "limited", "agent_id": None}
    page = await store.list_sessions(**args, offset=0, limit=1)
    if page.total > 1:
        page = await store.list_sessions(**args, offset=page.total - 1, limit=1)
    return page.items[0] if page.items else None


async def _parsed_whole(store: Any) -> list[Session]:
    """Redis's filtered list before: the index's every document in one reply, all parsed."""
    ids = await store._redis.zrevrange(store.k("sessions"), 0, -1)
    raws = await store._redis.mget([store.k("session", i) for i in ids]) if ids else []
    found = [PARSED.load(Session, r) for r in raws if r is not None]
    return [s for s in found if s.workflow_id == "wf7"][:20]


async def _one_store(name: str, url: str, finished: int, queued: int, reads: int) -> dict[str, Any]:
    store = storage_from_url(url, finished_session_limit=finished + queued)
    await store.open()
    try:
        await _save_all(store, _runs(finished, queued))
        listed = await store.list_sessions(
            status=None, workflow_id="wf7", agent_id=None, offset=0, limit=20
        )
        oldest, paged = (
            await store.oldest_session(status="queued", workflow_id="limited"),
            (await _oldest_by_pages(store)),
        )
        assert oldest is not None and paged is not None
        assert oldest.session_id == paged.session_id == "wait-0000001"
        long_ago = utcnow() - timedelta(days=365)
        assert await store.prune_finished(finished_before=long_ago, keep=finished) == 0
        result: dict[str, Any] = {
            "sessions": finished + queued,
            "filtered_total": listed.total,
            "filtered_list_ms": await _timed(
                lambda: store.list_sessions(
                    status=None, workflow_id="wf7", agent_id=None, offset=0, limit=20
                ),
                reads,
            ),
            "oldest_queued_ms": await _timed(
                lambda: store.oldest_session(status="queued", workflow_id="limited"), reads
            ),
            "oldest_by_pages_ms": await _timed(lambda: _oldest_by_pages(store), reads),
            "retention_sweep_ms": await _timed(
                lambda: store.prune_finished(finished_before=long_ago, keep=finished), reads
            ),
        }
        if name == "redis":
            assert [s.session_id for s in await _parsed_whole(store)] == [
                s.session_id for s in listed.items
            ]
            result["parsed_whole_ms"] = await _timed(lambda: _parsed_whole(store), reads)
        return result
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--queued", type=int, default=2_000)
    parser.add_argument("--reads", type=int, default=10)
    parser.add_argument("--stores", default="memory,sqlite,redis,postgresql")
    args = parser.parse_args()
    each_store(
        args.stores,
        lambda name, url: asyncio.run(
            _one_store(name, url, args.sessions, args.queued, args.reads)
        ),
    )


if __name__ == "__main__":
    main()
