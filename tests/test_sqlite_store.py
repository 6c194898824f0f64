"""What only the SQLite store does: group commit on its own thread. Calls that queue while
the thread is busy share one transaction, each in a savepoint of its own."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from opscore.errors import StorageError
from opscore.storage.sqlite.worker import GroupCommitThread


@pytest.fixture
def db(tmp_path):
    conn = sqlite3.connect(tmp_path / "g.db", isolation_level=None, check_same_thread=False)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY)")
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    yield conn, statements
    conn.close()


async def test_queued_calls_share_a_transaction_and_a_failure_undoes_only_its_own(db) -> None:
    conn, statements = db
    worker = GroupCommitThread(lambda: conn)
    started = threading.Event()
    release = threading.Event()

    def hold() -> None:  # keeps the thread busy while the others queue
        started.set()
        release.wait(10)

    def insert(key: str, fail: bool = False):
        def run() -> str:
            conn.execute("INSERT INTO t VALUES (?)", (key,))
            if fail:
                raise ValueError(f"{key} refused after writing")
            return key

        return run

    try:
        holding = asyncio.ensure_future(worker.call(hold))
        await asyncio.to_thread(started.wait, 10)
        calls = [
            asyncio.ensure_future(worker.call(insert("a"))),
            asyncio.ensure_future(worker.call(insert("b", fail=True))),
            asyncio.ensure_future(worker.call(insert("c"))),
        ]
        await asyncio.sleep(0.05)  # all three are queued behind hold()
        statements.clear()
        release.set()
        await holding
        results = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        release.set()
        worker.stop()

    assert results[0] == "a" and results[2] == "c"
    assert isinstance(results[1], ValueError)
    rows = {r[0] for r in conn.execute("SELECT k FROM t")}
    assert rows == {"a", "c"}  # b's insert went with its savepoint; a's and c's stayed
    # hold() had its own transaction; the three queued behind it shared one
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert statements.count("SAVEPOINT call") == 3


async def test_a_store_that_refuses_writes_fails_the_call_and_recovers(db) -> None:
    conn, _ = db
    worker = GroupCommitThread(lambda: conn)
    conn.execute("PRAGMA query_only = ON")  # nothing can be written, as on a full disk
    try:
        with pytest.raises(StorageError, match="SQLite error"):
            await worker.call(lambda: conn.execute("INSERT INTO t VALUES ('x')"))
        conn.execute("PRAGMA query_only = OFF")  # space is back
        await worker.call(lambda: conn.execute("INSERT INTO t VALUES ('y')"))
        assert await worker.call(lambda: conn.execute("SELECT k FROM t").fetchall()) == [("y",)]
    finally:
        worker.stop()


async def test_a_closed_store_answers_every_queued_call_with_an_error() -> None:
    worker = GroupCommitThread(lambda: None)
    try:
        with pytest.raises(StorageError, match="not open"):
            await worker.call(lambda: 1)
    finally:
        worker.stop()
