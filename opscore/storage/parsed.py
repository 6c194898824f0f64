"""Records parsed once per process: what a shared store answers is, far more often than not,
the very JSON this process wrote or read a moment ago (its own compare-and-set guesses, the
tasks of a run it advances, a record read along with a write). Parsing it again was about a
tenth of the process's CPU on Redis (bench/README.md).

Handing out one parsed instance more than once is safe because records are never changed in
place: every change is a ``model_copy`` (memory:// hands out its stored instances the same
way). Keyed by the model and the exact JSON, so a record changed anywhere is parsed afresh.

Tasks, agents and sessions keep only their newest version: each goes through several
versions in a run (queued, dispatched, running, completed; a slot taken and freed). Room is
counted in records and in bytes of JSON: a burst of runs queues far ahead of the agents (the
benchmark's 1,000 runs are queued within 3 s, then worked through in 9), and a run whose
records were pushed out before its steps came up parsed its tasks and session again at every
step: a tenth of a Redis replica's CPU (``bench/README.md``). At most ``MAX_BYTES`` of JSON
(about four times as much in memory as parsed models, for records of a few kB).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, TypeVar

from pydantic import BaseModel

from ..models import Agent, Session, StateRecord, TaskRun

M = TypeVar("M", bound=BaseModel)
SIZE = 8192  # records kept at most, least recently used first out
MAX_BYTES = 12 * 2**20  # and their JSON's length at most (a record above a tenth of it: not kept)
# records of these models are one record in many versions: the field that names the record
VERSIONED: dict[type[Any], str] = {TaskRun: "task_id", Agent: "agent_id", Session: "session_id"}
# written on every state report, read back only by history pages: not worth a place
PASSING: frozenset[type[Any]] = frozenset({StateRecord})


class ParsedRecords:
    """The last records parsed or written, by (model, JSON)."""

    def __init__(self, size: int = SIZE, max_bytes: int = MAX_BYTES) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._bytes = 0  # length of the JSON kept
        self._models: OrderedDict[tuple[type[Any], str], Any] = OrderedDict()
        # (model, record id) -> the JSON of its newest version kept in _models
        self._newest: dict[tuple[type[Any], str], str] = {}
        self._lock = threading.Lock()  # the SQLite store parses on its own thread too

    def load(self, model: type[M], raw: str) -> M:
        key = (model, raw)
        with self._lock:
            found = self._models.get(key)
            if found is not None:
                self._models.move_to_end(key)
                return found
        parsed = model.model_validate_json(raw)
        self._keep(key, parsed, newest=False)
        return parsed

    def dump(self, record: BaseModel) -> str:
        """The record's JSON, remembered so that reading it back costs no parse."""
        raw = record.model_dump_json()
        self._keep((type(record), raw), record, newest=True)
        return raw

    def _keep(self, key: tuple[type[Any], str], record: Any, *, newest: bool) -> None:
        """Keep ``record``; ``newest``: this process just wrote it, so the version kept
        before is superseded (a version read may be older than one written a moment ago:
        it does not displace it)."""
        model, raw = key
        if model in PASSING or len(raw) > self.max_bytes // 10:
            return
        field = VERSIONED.get(model)
        name = (model, getattr(record, field)) if field is not None else None
        with self._lock:
            if name is not None:
                older = self._newest.get(name)
                if older is None or newest:
                    superseded = None if older is None or older == raw else (model, older)
                    if superseded is not None and self._models.pop(superseded, None) is not None:
                        self._bytes -= len(superseded[1])  # it only took room
                    self._newest[name] = raw
            if key not in self._models:
                self._bytes += len(raw)
            self._models[key] = record
            self._models.move_to_end(key)
            while len(self._models) > self.size or self._bytes > self.max_bytes:
                (gone_model, gone_raw), gone = self._models.popitem(last=False)
                self._bytes -= len(gone_raw)
                gone_field = VERSIONED.get(gone_model)
                if gone_field is not None:
                    gone_name = (gone_model, getattr(gone, gone_field))
                    if self._newest.get(gone_name) == gone_raw:
                        del self._newest[gone_name]


PARSED = ParsedRecords()
