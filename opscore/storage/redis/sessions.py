"""RedisStorage: sessions (a run's record), and their index by status."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from datetime import datetime
from typing import Any

from ...models import (
    Page,
    Session,
)
from ..parsed import PARSED
from ..peek import Needles, Unknown, finished_at, may_match, needles
from .base import (
    Ops,
    _Base,
    _load,
)


def _match(raw: str, plain: Needles | None, wanted: dict[str, str]) -> tuple[bool, Session | None]:
    """Whether a session's record holds the wanted values: told by its text where it says so
    (``storage/peek.py``), else by a parse, which is handed back with the answer."""
    match = may_match(raw, plain) if plain is not None else None
    if match is not None:
        return match, None
    session = _load(Session, raw)
    found = session is not None and all(getattr(session, f) == v for f, v in wanted.items())
    return found, session


# documents read per round trip by a list filtered by workflow or agent; a search for the
# oldest of a workflow's starts with fewer (it often stops in its first chunk) and grows
_CHUNK = 500
_FIRST_CHUNK = 16


class SessionRecords(_Base):
    async def save_session(self, session: Session) -> None:
        key = self.k("session", session.session_id)
        raw = PARSED.dump(session)
        place = await self._script(
            "save_session",
            keys=[key, self.k("sessions"), self.k("seq", "sessions")],
            args=[session.session_id, raw, session.status.value, self.k("sessions", ""), "0"],
        )
        self._seen.put(key, raw)
        self._seen.put(self._place_key(session.session_id), str(place))

    def _place_key(self, session_id: str) -> str:
        """Where this process keeps the session's place (its score in the indexes) as seen:
        a name among the guesses, not a key of Redis's. A place never changes while the
        session is there (a session saved again keeps it)."""
        return self.k("place", session_id)

    async def get_session(self, session_id: str) -> Session | None:
        return _load(Session, await self._get(self.k("session", session_id)))

    async def list_sessions(
        self,
        *,
        status: str | None,
        workflow_id: str | None,
        agent_id: str | None,
        offset: int,
        limit: int,
    ) -> Page[Session]:
        index = self.k("sessions", status) if status else self.k("sessions")
        if workflow_id is None and agent_id is None:
            total = await self._redis.zcard(index)
            ids = await self._redis.zrevrange(index, offset, offset + limit - 1)
            raws = await self._redis.mget([self.k("session", i) for i in ids]) if ids else []
            items = [s for s in (_load(Session, r) for r in raws) if s is not None]
            return Page(items=items, total=total, offset=offset, limit=limit)
        return await self._filtered(index, workflow_id, agent_id, offset, limit)

    async def _filtered(
        self,
        index: str,
        workflow_id: str | None,
        agent_id: str | None,
        offset: int,
        limit: int,
    ) -> Page[Session]:
        """A list by workflow or agent: the index's documents read a chunk at a time (no
        reply of the whole store at once, the loop free between chunks), each matched by its
        text (``storage/peek.py``), and only the page's parsed. Still a read of every
        document in the index (there is no index by workflow or agent: one more write per run
        on the hot path), but no parse of every one."""
        wanted = {
            field: value
            for field, value in (("workflow_id", workflow_id), ("agent_id", agent_id))
            if value is not None
        }
        plain = needles(wanted)
        total = 0
        items: list[Session] = []
        async for chunk in self._documents(await self._redis.zrevrange(index, 0, -1)):
            for _, raw in chunk:
                matched, session = _match(raw, plain, wanted)
                if not matched:
                    continue
                if offset <= total < offset + limit:
                    session = session or _load(Session, raw)
                    if session is not None:
                        items.append(session)
                total += 1
        return Page(items=items, total=total, offset=offset, limit=limit)

    async def oldest_session(self, *, status: str, workflow_id: str) -> Session | None:
        """The status's index read oldest first, a chunk at a time, until a document of the
        workflow: one small chunk when the workflow's runs are a fair share of those
        waiting, more behind a long wait of other workflows' runs."""
        index = self.k("sessions", status)
        wanted = {"workflow_id": workflow_id}
        plain = needles(wanted)
        after, size = "-inf", min(_FIRST_CHUNK, _CHUNK)
        # by score (a run's place never changes), not by rank: a run another replica admits
        # meanwhile would shift the ranks and hide the one after it
        while flat := await self._batched(
            "ZRANGE", index, after, "+inf", "BYSCORE", "LIMIT", 0, size, "WITHSCORES"
        ):
            async for chunk in self._documents(flat[::2]):
                for _, raw in chunk:
                    matched, session = _match(raw, plain, wanted)
                    if matched:
                        return session or _load(Session, raw)
            after, size = f"({flat[-1]}", min(size * 4, _CHUNK)
        return None

    async def _finished_before(
        self, session_ids: list[str], before: datetime, most: int
    ) -> list[str]:
        """Up to ``most`` of these sessions that finished before ``before`` (retention's by
        age): their documents read a chunk at a time, each one's end read from its text
        (``storage/peek.py``); a sweep over the default 10,000 runs parsed every one, 170 ms
        of the event loop every five minutes."""
        found: list[str] = []
        async for chunk in self._documents(session_ids):
            for session_id, raw in chunk:
                finished = finished_at(raw)
                if isinstance(finished, Unknown):
                    session = _load(Session, raw)
                    finished = session.finished_at if session is not None else None
                if finished is not None and finished < before:
                    found.append(session_id)
                    if len(found) >= most:
                        return found
        return found

    async def _documents(self, session_ids: list[str]) -> AsyncIterator[list[tuple[str, str]]]:
        """The sessions' ids and records (those still there), a chunk of ``_CHUNK`` per round
        trip: no reply of the whole store at once, and the loop free between chunks."""
        prefix = self.k("session", "")
        for start in range(0, len(session_ids), _CHUNK):
            chunk = session_ids[start : start + _CHUNK]
            raws = await self._batched("MGET", *[prefix + i for i in chunk])
            yield [(i, raw) for i, raw in zip(chunk, raws, strict=True) if raw is not None]

    async def update_session(
        self, session_id: str, changes: dict[str, Any], *, expect: Collection[str] | None = None
    ) -> Session | None:
        def decide(raw: str | None) -> tuple[str | None, Session | None, Any]:
            session = _load(Session, raw)
            if session is None or (expect is not None and session.status not in expect):
                return None, None, None
            updated = session.model_copy(update=changes)
            return PARSED.dump(updated), updated, self._session_moved(session, updated)

        return await self._cas(self.k("session", session_id), decide)

    def _session_moved(self, before: Session, after: Session) -> Callable[[Ops], None]:
        """What a session's change writes beside its record (compared in the same script):
        its place in the index by status, moved under the score this process saw it take
        (no ZSCORE), or read there when it saw none."""

        sid = after.session_id
        place = self._seen.get(self._place_key(sid))

        def ops(p: Ops) -> None:
            if after.status == before.status:
                return
            old, new = (
                self.k("sessions", before.status.value),
                self.k("sessions", after.status.value),
            )
            if isinstance(place, str):
                # the record is compared in the same script: it is there, so its place is too
                p.zrem(old, sid)
                p.zadd(new, {sid: float(place)})
            else:
                p.zmove(self.k("sessions"), old, new, sid)

        return ops
