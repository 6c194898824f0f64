"""A session's ``workflow_id``, ``agent_id`` and ``finished_at`` read from its stored JSON
without parsing it.

A store that keeps sessions as JSON documents alone (Redis) filters a list by workflow or by
agent, and finds the runs retention removes, by reading the documents of an index. Parsing
each (pydantic, about 15 us for a run with a small payload) made ``GET
/sessions?workflowId=...`` over the default 10,000 kept runs cost 150 ms of the event loop,
and each retention sweep as much: every agent's report waited behind it. Looking the field's
value up in the text costs about a microsecond, and only what is returned is parsed.

Why a substring finds the right field: ``model_dump_json`` writes fields in declaration
order (``tests/test_peek.py`` pins the order this relies on). Inside a JSON string each
``"`` is escaped, so ``"agent_id":`` cannot occur in a value; it can in a nested object (a
payload's keys), and those come after the ids (every field before them is a plain string).
The first occurrence is therefore the session's own, and the text after it is the value
exactly as ``model_dump_json`` writes it. ``finished_at`` is the last field: its value ends
the document. A wanted value that JSON would escape, or text in any other shape, is not
guessed at: the caller parses.
"""

from __future__ import annotations

import json
from datetime import datetime

Needles = list[tuple[str, str]]


def needles(wanted: dict[str, str]) -> Needles | None:
    """For each wanted field, its key as written and the key with the wanted value; None
    when a value would be escaped in JSON (parse instead: the text could spell it several
    ways)."""
    found: Needles = []
    for field, value in wanted.items():
        quoted = json.dumps(value, ensure_ascii=False)
        if quoted[1:-1] != value:
            return None
        key = f'"{field}":'
        found.append((key, key + quoted))
    return found


def may_match(raw: str, wanted: Needles) -> bool | None:
    """Whether the document holds every wanted value: True or False when its text says so,
    None when it must be parsed to tell (a field not found)."""
    for key, exact in wanted:
        at = raw.find(key)
        if at < 0:
            return None
        if not raw.startswith(exact, at):
            return False
    return True


class Unknown:
    """The text does not say plainly: parse the document."""

    def __repr__(self) -> str:
        return "UNKNOWN"


UNKNOWN = Unknown()
_FINISHED = '"finished_at":'


def finished_at(raw: str) -> datetime | Unknown | None:
    """The session's ``finished_at`` (None while it runs), from the end of its text, or
    ``UNKNOWN`` when the text does not end as ``model_dump_json`` ends a session."""
    if raw.endswith(_FINISHED + "null}"):
        return None
    at = raw.rfind(_FINISHED + '"')
    if at < 0 or not raw.endswith('"}'):
        return UNKNOWN
    text = raw[at + len(_FINISHED) + 1 : -2]
    if '"' in text or "\\" in text:
        return UNKNOWN
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return UNKNOWN
    return moment if moment.tzinfo is not None else UNKNOWN
