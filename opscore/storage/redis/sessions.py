"""RedisStorage: sessions (a run's record), and their index by status."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from ...models import (
    Page,
    Session,
)
from ..parsed import PARSED
from .base import (
    Ops,
    _Base,
    _load,
    _page,
)


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
        ids = await self._redis.zrevrange(index, 0, -1)
        raws = await self._redis.mget([self.k("session", i) for i in ids]) if ids else []
        sessions = [
            s
            for s in (_load(Session, r) for r in raws)
            if s is not None
            and (workflow_id is None or s.workflow_id == workflow_id)
            and (agent_id is None or s.agent_id == agent_id)
        ]
        return _page(sessions, offset, limit)

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
