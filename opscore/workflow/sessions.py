"""Sessions: looking runs up, and ad-hoc sessions that callers open and close themselves."""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import ConflictError
from ..lifecycle.registry import AgentRegistry
from ..models import Page, Session, SessionCreate, SessionStatus, SessionUpdate
from ..observe.logs import log_operation
from .engine import WorkflowEngine
from .transitions import move_session_or_raise


class SessionService:
    """Ad-hoc sessions, and reading any session (workflow runs included)."""

    def __init__(self, engine: WorkflowEngine, registry: AgentRegistry) -> None:
        self.engine = engine
        self.storage = engine.storage
        self.registry = registry
        self.clock = engine.clock

    async def start_session(self, data: SessionCreate) -> Session:
        """Open an ad-hoc session, optionally tied to a registered agent."""
        if data.agent_id is not None:
            await self.registry.get_agent(data.agent_id)
        now = self.clock()
        session = Session(
            session_id=str(uuid.uuid4()),
            kind="adhoc",
            name=data.name,
            agent_id=data.agent_id,
            metadata=data.metadata,
            created_at=now,
            updated_at=now,
        )
        await self.storage.save_session(session)
        log_operation(
            "session.started", {"sessionId": session.session_id, "agentId": data.agent_id}
        )
        return session

    async def get_session(self, session_id: str) -> Session:
        """The session, or NotFoundError (SESSION_NOT_FOUND)."""
        return await self.engine.get_session(session_id)

    async def list_sessions(
        self,
        *,
        status: str | None,
        workflow_id: str | None,
        agent_id: str | None,
        offset: int,
        limit: int,
    ) -> Page[Session]:
        """One page of sessions, newest first, with optional filters."""
        return await self.storage.list_sessions(
            status=status, workflow_id=workflow_id, agent_id=agent_id, offset=offset, limit=limit
        )

    async def update_session(self, session_id: str, data: SessionUpdate) -> Session:
        """Change an ad-hoc session's metadata or status (workflow runs move by themselves)."""
        session = await self.get_session(session_id)
        now = self.clock()
        changes: dict[str, Any] = {"updated_at": now}
        if data.metadata is not None:
            changes["metadata"] = {**session.metadata, **data.metadata}
        if data.error is not None:
            changes["error"] = data.error
        if data.status is None or data.status == session.status:
            updated = await self.storage.update_session(session_id, changes)
            return updated or session
        if session.kind == "workflow":
            raise ConflictError(
                "A workflow run's status follows its tasks; use POST .../cancel to stop it",
                code="ILLEGAL_TRANSITION",
            )
        if data.status != SessionStatus.RUNNING:
            changes["finished_at"] = now
        return await move_session_or_raise(self.storage, session, data.status, **changes)
