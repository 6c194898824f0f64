"""A session's ids read from its JSON text (``storage/peek.py``): the field order it relies
on, and its answers against a parse."""

from __future__ import annotations

from typing import get_args

from opscore.models import Session, SessionStatus, utcnow
from opscore.storage.parsed import PARSED
from opscore.storage.peek import may_match, needles


def test_every_field_before_the_looked_up_ones_is_a_plain_string() -> None:
    # a nested object written before workflow_id or agent_id could hold the key first
    fields = list(Session.model_fields.items())
    last = max(i for i, (name, _) in enumerate(fields) if name in ("workflow_id", "agent_id"))
    for name, info in fields[:last]:
        kinds = set(get_args(info.annotation)) or {info.annotation}
        assert kinds <= {str, type(None)} or name == "kind", (name, info.annotation)


def test_text_answers_as_a_parse_would() -> None:
    now = utcnow()
    tricky = {"workflow_id": "w", "agent_id": "a"}
    cases = [
        Session(session_id="s", workflow_id="w", agent_id="a", created_at=now, updated_at=now),
        Session(
            session_id='"workflow_id":"w"',
            name='"agent_id":"a"',
            workflow_id="w2",
            initial_payload=tricky,
            metadata=tricky,
            status=SessionStatus.QUEUED,
            created_at=now,
            updated_at=now,
        ),
        Session(session_id="n", workflow_id=None, agent_id=None, created_at=now, updated_at=now),
    ]
    for wanted in ({"workflow_id": "w"}, {"agent_id": "a"}, {"workflow_id": "w", "agent_id": "a"}):
        plain = needles(wanted)
        assert plain is not None
        for case in cases:
            raw = PARSED.dump(case)
            parsed = all(getattr(case, f) == v for f, v in wanted.items())
            assert may_match(raw, plain) is parsed, (wanted, raw)


def test_a_value_json_would_escape_or_a_missing_field_is_left_to_a_parse() -> None:
    assert needles({"workflow_id": 'w"'}) is None
    assert needles({"workflow_id": "back\\slash"}) is None
    assert needles({"workflow_id": "ünï"}) is not None
    assert may_match('{"session_id":"s"}', needles({"agent_id": "a"}) or []) is None


def test_a_runs_end_is_read_from_the_end_of_its_text() -> None:
    from datetime import timedelta

    from opscore.storage.peek import Unknown, finished_at

    assert list(Session.model_fields)[-1] == "finished_at"  # what the reading relies on
    now = utcnow()
    earlier = now - timedelta(days=3)
    nested = {"finished_at": earlier.isoformat(), "x": {"finished_at": None}}
    running = Session(
        session_id="r", initial_payload=nested, metadata=nested, created_at=now, updated_at=now
    )
    assert finished_at(PARSED.dump(running)) is None
    done = running.model_copy(update={"finished_at": now, "status": SessionStatus.COMPLETED})
    assert finished_at(PARSED.dump(done)) == now
    whole_second = now.replace(microsecond=0)
    assert finished_at(PARSED.dump(done.model_copy(update={"finished_at": whole_second}))) == (
        whole_second
    )
    # not as a session's text ends, or without a zone: parse instead
    assert isinstance(finished_at('{"finished_at":"2026-01-01T12:00:00"}'), Unknown)
    assert isinstance(finished_at('{"finished_at":"soon"}'), Unknown)
    assert isinstance(finished_at('{"finished_at": "2026-01-01T12:00:00Z"}'), Unknown)
    assert isinstance(finished_at("{}"), Unknown)
