"""Records parsed once per process: what a shared store answers is, far more often than not,
the very JSON this process wrote or read a moment ago (its own compare-and-set guesses, the
tasks of a run it advances, a record read along with a write). Parsing it again was about a
tenth of the process's CPU on Redis (bench/README.md).

Handing out one parsed instance more than once is safe because records are never changed in
place: every change is a ``model_copy`` (memory:// hands out its stored instances the same
way). Keyed by the model and the exact JSON, so a record changed anywhere is parsed afresh.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
SIZE = 2048  # records kept at most, least recently used first out


class ParsedRecords:
    """The last records parsed or written, by (model, JSON)."""

    def __init__(self, size: int = SIZE) -> None:
        self.size = size
        self._models: OrderedDict[tuple[type[Any], str], Any] = OrderedDict()
        self._lock = threading.Lock()  # the SQLite store parses on its own thread too

    def load(self, model: type[M], raw: str) -> M:
        key = (model, raw)
        with self._lock:
            found = self._models.get(key)
            if found is not None:
                self._models.move_to_end(key)
                return found
        parsed = model.model_validate_json(raw)
        self._keep(key, parsed)
        return parsed

    def dump(self, record: BaseModel) -> str:
        """The record's JSON, remembered so that reading it back costs no parse."""
        raw = record.model_dump_json()
        self._keep((type(record), raw), record)
        return raw

    def _keep(self, key: tuple[type[Any], str], record: Any) -> None:
        with self._lock:
            self._models[key] = record
            self._models.move_to_end(key)
            if len(self._models) > self.size:
                self._models.popitem(last=False)


PARSED = ParsedRecords()
