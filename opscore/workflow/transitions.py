"""The legal moves of task and session statuses, and the one function each that applies them.

Nothing else writes a task's or a session's ``status``: every change is a compare-and-set in
storage from the statuses this table allows, so two concurrent actors never both win.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import ConflictError
from ..models import Session, SessionStatus, TaskRun, TaskStatus
from ..storage.base import Storage
from ..storage.report_and_task import RunEnd, TaskUpdate

S = TaskStatus
TASK_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    # FAILED from PENDING: its parameters cannot be resolved within the size limit, or its
    # condition cannot be evaluated; WAITING: an approval or signal step; SKIPPED: conditions
    S.PENDING: frozenset({S.QUEUED, S.WAITING, S.SKIPPED, S.CANCELLED, S.FAILED}),
    # COMPLETED from QUEUED: the late answer of an attempt lost to liveness (outcomes.py);
    # FAILED: its workflow's budget is spent and says fail (handover.budget_refused)
    S.QUEUED: frozenset({S.DISPATCHED, S.CANCELLED, S.COMPLETED, S.FAILED}),
    # WAITING from DISPATCHED or RUNNING: an A2A agent asks for input (workflow/a2a.py)
    S.DISPATCHED: frozenset({S.RUNNING, S.COMPLETED, S.FAILED, S.QUEUED, S.CANCELLED, S.WAITING}),
    S.RUNNING: frozenset({S.COMPLETED, S.FAILED, S.QUEUED, S.CANCELLED, S.WAITING}),
    # decided (approved, rejected, signalled, timed out) or cancelled with its run; RUNNING:
    # an A2A agent's task that asked for input got it (workflow/a2a.py)
    S.WAITING: frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.RUNNING}),
    S.FAILED: frozenset({S.QUEUED, S.WAITING}),  # re-drive from the dead-letter list
    S.COMPLETED: frozenset(),
    S.SKIPPED: frozenset(),
    S.CANCELLED: frozenset({S.PENDING, S.QUEUED}),  # a failed session that is re-driven
}

SS = SessionStatus
SESSION_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    SS.QUEUED: frozenset({SS.RUNNING, SS.CANCELLED}),  # admitted under the run limit
    SS.RUNNING: frozenset({SS.COMPLETED, SS.FAILED, SS.CANCELLED}),
    SS.FAILED: frozenset({SS.RUNNING}),
    SS.COMPLETED: frozenset(),
    SS.CANCELLED: frozenset(),
}

TERMINAL_TASK = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED, S.SKIPPED})
INFLIGHT_TASK = frozenset({S.DISPATCHED, S.RUNNING})


def _sources_of(table: dict[Any, frozenset[Any]]) -> dict[Any, tuple[str, ...]]:
    """Per status, the statuses a move to it may come from, in the table's order: worked out
    once, not per move (a dozen moves per three-step run)."""
    return {
        target: tuple(s.value for s, targets in table.items() if target in targets)
        for target in table
    }


_TASK_SOURCES = _sources_of(TASK_TRANSITIONS)
_SESSION_SOURCES = _sources_of(SESSION_TRANSITIONS)


def task_move(
    to: TaskStatus,
    *,
    only_from: frozenset[TaskStatus] | None = None,
    attempt: int | None = None,
    release_slot_of: str | None = None,
    meaning: str = "",
    **changes: Any,
) -> TaskUpdate:
    """The compare-and-set that moves a task to ``to`` from the statuses the table (and
    ``only_from``) allow: what ``move_task`` writes, for a store that writes it along with
    something else (``Storage.record_report``)."""
    allowed = list(_TASK_SOURCES[to])
    if only_from is not None:
        allowed = [s for s in allowed if s in only_from]
    return TaskUpdate(
        {"status": to, **changes},
        expect=allowed,
        attempt=attempt,
        release_slot_of=release_slot_of,
        meaning=meaning,
    )


async def move_task(
    storage: Storage,
    task_id: str,
    to: TaskStatus,
    *,
    only_from: frozenset[TaskStatus] | None = None,
    attempt: int | None = None,
    enqueue_at: datetime | None = None,
    release_slot_of: str | None = None,
    claim_slot_of: str | None = None,
    ack_entry: bool = False,
    **changes: Any,
) -> TaskRun | None:
    """Move a task to ``to`` if its status (and attempt, if given) allows it; None when
    another actor got there first. ``enqueue_at``: the move also queues the task;
    ``release_slot_of``: the agent of the attempt that ends gives up its slot;
    ``claim_slot_of``: the agent of the attempt that starts takes one (NoFreeSlotError when
    it has none free); ``ack_entry``: the queue entry a dispatcher's pass leased is
    acknowledged; all with the move (``Storage.update_task``)."""
    move = task_move(to, only_from=only_from, attempt=attempt, **changes)
    return await storage.update_task(
        task_id,
        move.changes,
        expect=move.expect,
        attempt=attempt,
        enqueue_at=enqueue_at,
        release_slot_of=release_slot_of,
        claim_slot_of=claim_slot_of,
        ack_entry=ack_entry,
    )


async def apply_move(storage: Storage, task_id: str, move: TaskUpdate) -> TaskRun | None:
    """Write a ``task_move`` on its own; None when another actor got there first."""
    return await storage.update_task(
        task_id,
        move.changes,
        expect=move.expect,
        attempt=move.attempt,
        release_slot_of=move.release_slot_of,
    )


def run_completion(session_id: str, now: datetime) -> RunEnd:
    """The move of a run to completed: what ``WorkflowEngine`` writes when its last step is
    done, on its own or along with that step's completion (``TaskUpdate.ends_run``)."""
    to = SessionStatus.COMPLETED
    changes = {"status": to, "finished_at": now, "updated_at": now}
    return RunEnd(session_id, changes, _SESSION_SOURCES[to])


async def move_session(
    storage: Storage, session_id: str, to: SessionStatus, **changes: Any
) -> Session | None:
    """Move a session to ``to`` if its status allows it; None otherwise."""
    return await storage.update_session(
        session_id, {"status": to, **changes}, expect=list(_SESSION_SOURCES[to])
    )


async def move_session_or_raise(
    storage: Storage, session: Session, to: SessionStatus, **changes: Any
) -> Session:
    """As move_session, for operator requests: an illegal move is a 409 that names both ends."""
    moved = await move_session(storage, session.session_id, to, **changes)
    if moved is None:
        current = await storage.get_session(session.session_id)
        status = current.status.value if current else "missing"
        raise ConflictError(
            f"Session '{session.session_id}' cannot move from '{status}' to '{to.value}'",
            code="ILLEGAL_TRANSITION",
        )
    return moved
