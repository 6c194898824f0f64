"""Embedded durable store: one SQLite file in WAL mode, no server.

Records are JSON documents beside the columns that queries filter or sort on. Every method is
atomic: one short transaction, or a savepoint in a transaction it shares with the calls queued
beside it on the store's thread (group commit, see ``worker``); ``BEGIN IMMEDIATE`` makes the
compare-and-set methods atomic against other processes sharing the file too. WAL with
``synchronous=NORMAL`` survives a killed process (SIGKILL) without losing committed work.
Point calls run on the event loop on a connection that never waits; whatever may wait (a file
locked by another process, scans, checkpoints that sync the disk) runs on the store's thread
(``calls``), so it stalls that call, not the service.
"""

from __future__ import annotations

from .agents import AgentRecords
from .base import path_from_url
from .documents import DocumentRecords
from .queue import QueueRecords
from .runs import RunRecords
from .templates import TemplateRecords


class SQLiteStorage(AgentRecords, RunRecords, TemplateRecords, QueueRecords, DocumentRecords):
    """``Storage`` on one SQLite file (``sqlite:///path/to/opscore.db``).

    One class per group of records (``agents``, ``runs``, ``templates``, ``queue``, ``documents``) over a shared connection
    (``base``), so each module stays one responsibility.
    """


__all__ = ["SQLiteStorage", "path_from_url"]
