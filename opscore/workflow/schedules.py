"""Schedules: runs of a template on a cron expression or an interval, each tick once.

A schedule is a document in the store, due at its next tick. The dispatcher's sweep claims what
is due under a lease (``Storage.claim_due``), so of several replicas one handles each tick, and
starts the run under the Idempotency-Key ``schedule:<id>:<tick>``: a replica that dies after
starting the run but before writing the schedule back leaves the tick to another replica,
whose start returns the run already made. So every tick fires once, across replicas and
restarts. Writing back is a compare-and-set over the document claimed: an operator's change
made meanwhile wins, and is not overwritten.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from ..errors import ConflictError, NotFoundError, OpsCoreError
from ..models import (
    Page,
    RunAccepted,
    Schedule,
    ScheduleCreate,
    ScheduleFields,
    SessionStatus,
)
from ..observe.logs import log_operation
from .catalog import TemplateCatalog
from .cron import check, due_ticks, next_tick
from .engine import WorkflowEngine
from .runs import RunService

SCHEDULE = "schedule"
LEASE_SECONDS = 60.0
GRACE = timedelta(seconds=60)  # a tick this late is still on time (catch-up "skip")
RECHECK = timedelta(seconds=1)  # how often a tick held back by overlap looks again
MOST_CAUGHT_UP = 100
logger = logging.getLogger("opscore.schedules")


class ScheduleService:
    """Create, change, pause and trigger schedules; the sweep fires what is due."""

    def __init__(self, engine: WorkflowEngine, templates: TemplateCatalog, runs: RunService):
        self.engine = engine
        self.storage = engine.storage
        self.templates = templates
        self.runs = runs

    # --- the owner's side ----------------------------------------------------------------
    async def create(self, body: ScheduleCreate) -> Schedule:
        await self.templates.get_template(body.workflow_id, body.version)
        now = self.engine.clock()
        schedule_id = body.schedule_id or f"sched-{uuid.uuid4().hex[:12]}"
        fields = body.model_dump(exclude_none=True, exclude={"schedule_id", "workflow_id"})
        schedule = self._checked(
            Schedule(
                schedule_id=schedule_id,
                workflow_id=body.workflow_id,
                created_at=now,
                updated_at=now,
                **fields,
            ),
            now,
        )
        if await self.storage.get_document(SCHEDULE, schedule_id) is not None:
            raise ConflictError(f"Schedule '{schedule_id}' exists", code="SCHEDULE_EXISTS")
        await self._put(schedule)
        log_operation(
            "schedule.created",
            {"scheduleId": schedule_id, "workflowId": body.workflow_id, "next": _iso(schedule)},
        )
        return schedule

    async def get(self, schedule_id: str) -> Schedule:
        return Schedule.model_validate_json(await self._raw(schedule_id))

    async def list_schedules(self, *, offset: int, limit: int) -> Page[Schedule]:
        page = await self.storage.list_documents(SCHEDULE, offset=offset, limit=limit)
        items = [Schedule.model_validate_json(d) for d in page.items]
        return Page(items=items, total=page.total, offset=offset, limit=limit)

    async def update(self, schedule_id: str, body: ScheduleFields) -> Schedule:
        """Change what is given; the next tick is worked out again from now."""
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        if "cron" in changes:
            changes["interval_seconds"] = None
        elif "interval_seconds" in changes:
            changes["cron"] = None
        updated = await self._change(schedule_id, changes)
        log_operation("schedule.updated", {"scheduleId": schedule_id, **changes})
        return updated

    async def set_paused(self, schedule_id: str, paused: bool) -> Schedule:
        """Pause (no ticks fire) or resume (from the next tick; none missed while paused)."""
        updated = await self._change(schedule_id, {"paused": paused})
        log_operation(
            "schedule.paused" if paused else "schedule.resumed", {"scheduleId": schedule_id}
        )
        return updated

    async def delete(self, schedule_id: str) -> None:
        if not await self.storage.delete_document(SCHEDULE, schedule_id):
            raise NotFoundError(f"Schedule '{schedule_id}' not found", code="SCHEDULE_NOT_FOUND")
        log_operation("schedule.deleted", {"scheduleId": schedule_id})

    async def trigger(self, schedule_id: str) -> RunAccepted:
        """Run the schedule's template now, whatever its next tick and overlap policy."""
        schedule = await self.get(schedule_id)
        now = self.engine.clock()
        accepted = await self._start(
            schedule, now, key=f"schedule:{schedule_id}:now:{uuid.uuid4()}"
        )
        for _ in range(5):  # record it; retried over a concurrent change
            raw = await self._raw(schedule_id)
            current = Schedule.model_validate_json(raw)
            done = current.model_copy(
                update={
                    "last_fired_at": now,
                    "last_session_id": accepted.session_id,
                    "fired": current.fired + 1,
                }
            )
            if await self._put(done, expect=raw):
                break
        return accepted

    # --- the sweep -----------------------------------------------------------------------
    async def sweep(self, now: datetime) -> None:
        """Fire every schedule due at ``now`` (run by the dispatcher's loop)."""
        for raw in await self.storage.claim_due(
            SCHEDULE, now, limit=50, lease_seconds=LEASE_SECONDS
        ):
            try:
                await self._fire_due(raw, now)
            except OpsCoreError:  # the store went away: the lease brings it back later
                logger.exception("schedule not fired")

    async def _fire_due(self, raw: str, now: datetime) -> None:
        schedule = Schedule.model_validate_json(raw)
        if schedule.paused or schedule.next_fire_at is None:
            await self._put(schedule, expect=raw)
            return
        state: dict[str, Any] = {
            "running": await self._running(schedule.last_session_id),
            "queued_tick": schedule.queued_tick,
            "fired": schedule.fired,
            "skipped": schedule.skipped,
        }
        changes: dict[str, Any] = {}
        if schedule.queued_tick is not None and not state["running"]:
            state["queued_tick"] = None
            await self._fire_tick(schedule, schedule.queued_tick, state, changes)
        if schedule.next_fire_at <= now:
            for tick in self._ticks_to_fire(schedule, now, state):
                if state["running"] and schedule.overlap != "allow":
                    if schedule.overlap == "queue_one" and state["queued_tick"] is None:
                        state["queued_tick"] = tick
                    else:
                        state["skipped"] += 1
                    continue
                await self._fire_tick(schedule, tick, state, changes)
            changes["next_fire_at"] = next_tick(
                schedule.cron,
                schedule.interval_seconds,
                schedule.timezone,
                now,
                anchor=schedule.created_at,
            )
        done = schedule.model_copy(
            update={
                **changes,
                "queued_tick": state["queued_tick"],
                "fired": state["fired"],
                "skipped": state["skipped"],
            }
        )
        await self._put(done, expect=raw)  # a change made meanwhile wins

    def _ticks_to_fire(
        self, schedule: Schedule, now: datetime, state: dict[str, Any]
    ) -> list[datetime]:
        """The due ticks the catch-up policy fires; the others count as skipped."""
        assert schedule.next_fire_at is not None
        most = MOST_CAUGHT_UP if schedule.catch_up == "all" else 1
        ticks, total = due_ticks(
            schedule.cron,
            schedule.interval_seconds,
            schedule.timezone,
            schedule.next_fire_at,
            now,
            anchor=schedule.created_at,
            most=most,
        )
        if schedule.catch_up == "skip":
            ticks = [t for t in ticks if now - t <= GRACE]
        state["skipped"] += total - len(ticks)
        return ticks

    async def _fire_tick(
        self, schedule: Schedule, tick: datetime, state: dict[str, Any], changes: dict[str, Any]
    ) -> None:
        key = f"schedule:{schedule.schedule_id}:{tick.isoformat()}"
        try:
            accepted = await self._start(schedule, tick, key=key)
        except OpsCoreError as exc:
            if exc.status_code >= 500:
                raise
            state["skipped"] += 1
            changes["last_error"] = exc.message
            log_operation(
                "schedule.failed",
                {
                    "scheduleId": schedule.schedule_id,
                    "tick": tick.isoformat(),
                    "error": exc.message,
                },
                level=logging.ERROR,
            )
            return
        state["running"] = await self._running(accepted.session_id)
        if not accepted.duplicate:  # a duplicate: another replica fired this tick already
            state["fired"] += 1
        changes.update(
            last_fired_at=self.engine.clock(),
            last_tick=tick,
            last_session_id=accepted.session_id,
            last_error=None,
        )

    async def _start(self, schedule: Schedule, tick: datetime, *, key: str) -> RunAccepted:
        template = await self.templates.get_template(schedule.workflow_id, schedule.version)
        accepted = await self.runs.start_run(
            template.definition(),
            payload=schedule.payload,
            metadata={
                **schedule.metadata,
                "scheduleId": schedule.schedule_id,
                "scheduledFor": tick.isoformat(),
            },
            idempotency_key=key,
        )
        log_operation(
            "schedule.fired",
            {
                "scheduleId": schedule.schedule_id,
                "tick": tick.isoformat(),
                "sessionId": accepted.session_id,
                "duplicate": accepted.duplicate,
            },
        )
        return accepted

    async def _running(self, session_id: str | None) -> bool:
        """Whether the schedule's last run is still running (what overlap looks at)."""
        if session_id is None:
            return False
        session = await self.storage.get_session(session_id)
        return session is not None and session.status == SessionStatus.RUNNING

    # --- inside --------------------------------------------------------------------------
    def _checked(self, schedule: Schedule, now: datetime) -> Schedule:
        """The schedule validated, described, and due at its next tick from ``now``."""
        description = check(schedule.cron, schedule.interval_seconds, schedule.timezone)
        upcoming = None
        if not schedule.paused:
            upcoming = next_tick(
                schedule.cron,
                schedule.interval_seconds,
                schedule.timezone,
                now,
                anchor=schedule.created_at,
            )
        return schedule.model_copy(
            update={"description": description, "next_fire_at": upcoming, "updated_at": now}
        )

    async def _change(self, schedule_id: str, changes: dict[str, Any]) -> Schedule:
        for _ in range(5):
            raw = await self._raw(schedule_id)
            current = Schedule.model_validate_json(raw)
            if "version" in changes:
                await self.templates.get_template(current.workflow_id, changes["version"])
            updated = self._checked(current.model_copy(update=changes), self.engine.clock())
            if await self._put(updated, expect=raw):
                return updated
        raise ConflictError(
            f"Schedule '{schedule_id}' keeps changing; try again", code="SCHEDULE_CHANGED"
        )

    async def _raw(self, schedule_id: str) -> str:
        raw = await self.storage.get_document(SCHEDULE, schedule_id)
        if raw is None:
            raise NotFoundError(f"Schedule '{schedule_id}' not found", code="SCHEDULE_NOT_FOUND")
        return raw

    async def _put(self, schedule: Schedule, *, expect: str | None = None) -> bool:
        due = schedule.next_fire_at
        if schedule.queued_tick is not None and not schedule.paused:
            soon = self.engine.clock() + RECHECK
            due = min(due, soon) if due else soon
        if schedule.paused:
            due = None
        return await self.storage.put_document(
            SCHEDULE, schedule.schedule_id, schedule.model_dump_json(), due_at=due, expect=expect
        )


def _iso(schedule: Schedule) -> str | None:
    return schedule.next_fire_at.isoformat() if schedule.next_fire_at else None
