"""Run limits: at most ``maxConcurrentRuns`` runs of a workflow at once; the rest wait.

A run over the limit starts ``queued``; it is admitted (``running``, its first tasks queued) in
the order runs were started, when a run of the same workflow ends. The slots are a pool in the
store (``dispatch.limits.SlotPools``), so the limit holds across replicas; the sweep admits
what a replica that died left waiting and reclaims the slots of runs that are over.
"""

from __future__ import annotations

from datetime import datetime

from ..dispatch.limits import SlotPools
from ..models import Session, SessionStatus
from ..observe.logs import log_operation
from .engine import WorkflowEngine
from .transitions import move_session

_MOST = 1000  # runs admitted in one go
SWEEP_EVERY = 5.0  # seconds between two sweeps of what waits


def pool(workflow_id: str) -> str:
    return f"runs:{workflow_id}"


class RunAdmissions:
    """Admits queued runs while their workflow's limit allows."""

    def __init__(self, engine: WorkflowEngine) -> None:
        self.engine = engine
        self.storage = engine.storage
        self.pools = SlotPools(engine.storage)
        self._swept: datetime | None = None

    async def admit(self, workflow_id: str) -> None:
        """Start this workflow's queued runs, oldest first, while a slot is free."""
        for _ in range(_MOST):
            oldest = await self._oldest_queued(workflow_id)
            if oldest is None:
                return
            if not await self.pools.acquire(pool(workflow_id), oldest.session_id, oldest.run_limit):
                return
            started = await move_session(
                self.storage,
                oldest.session_id,
                SessionStatus.RUNNING,
                updated_at=self.engine.clock(),
            )
            if started is None:  # cancelled meanwhile, or another replica admitted it
                current = await self.storage.get_session(oldest.session_id)
                if current is None or current.status != SessionStatus.RUNNING:
                    await self.pools.release(pool(workflow_id), [oldest.session_id])
                continue
            log_operation(
                "workflow.admitted", {"sessionId": started.session_id, "workflowId": workflow_id}
            )
            await self.engine.advance(started.session_id)

    async def hold(self, session: Session) -> None:
        """A re-driven run of a limited workflow takes a slot again, whatever the count."""
        if session.run_limit is not None and session.workflow_id:
            await self.pools.acquire(pool(session.workflow_id), session.session_id, None)

    async def run_ended(self, session: Session) -> None:
        """A run of a limited workflow ended: its slot goes to the oldest queued run."""
        if session.run_limit is None or not session.workflow_id:
            return
        await self.pools.release(pool(session.workflow_id), [session.session_id])
        await self.admit(session.workflow_id)

    async def sweep(self, now: datetime) -> None:
        """Admit what waits (a replica may have died between a run's end and admitting the
        next), after reclaiming the slots of runs that are no longer running."""
        if self._swept is not None and (now - self._swept).total_seconds() < SWEEP_EVERY:
            return
        self._swept = now
        page = await self.storage.list_sessions(
            status=SessionStatus.QUEUED.value, workflow_id=None, agent_id=None, offset=0, limit=500
        )
        for workflow_id in sorted({s.workflow_id for s in page.items if s.workflow_id}):
            holders = await self.pools.holders(pool(workflow_id))
            gone = []
            for holder in holders:
                session = await self.storage.get_session(holder)
                if session is None or session.status != SessionStatus.RUNNING:
                    gone.append(holder)
            if gone:
                await self.pools.release(pool(workflow_id), gone)
            await self.admit(workflow_id)

    async def _oldest_queued(self, workflow_id: str) -> Session | None:
        return await self.storage.oldest_session(
            status=SessionStatus.QUEUED.value, workflow_id=workflow_id
        )
