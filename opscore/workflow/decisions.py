"""Approval and signal steps: what waits, and the decisions that end a wait.

A step of kind ``approval`` waits for an operator to approve or reject it; a step of kind
``signal`` for a named signal, sent by any caller allowed to. A wait with a timeout is decided
by the sweep when it runs out (``wait.onTimeout``). Whoever decides, the decision (who, when,
the comment and payload) is recorded on the task and becomes its result, so later steps read it
as ``${tasks.<id>.result.payload...}`` or in a condition. Each decision is one compare-and-set
from ``waiting``: of an operator and a timeout racing, exactly one decides.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from ..errors import ConflictError
from ..models import Decision, Page, SessionStatus, TaskRun, TaskStatus, WaitingStep
from ..observe.logs import log_operation
from .engine import WorkflowEngine
from .outcomes import TaskOutcomes
from .transitions import move_task

S = TaskStatus
TIMEOUT_DECIDER = "opscore:timeout"


class DecisionService:
    """Lists waiting steps; approves, rejects and signals them; times them out."""

    def __init__(self, engine: WorkflowEngine, outcomes: TaskOutcomes) -> None:
        self.engine = engine
        self.outcomes = outcomes
        self.storage = engine.storage
        # an A2A agent's task that asked for input, given it by a signal (workflow/a2a.py)
        self.resume: Callable[[TaskRun, Decision], Awaitable[TaskRun | None]] | None = None

    async def list_waiting(
        self,
        *,
        kind: str | None = None,
        session_id: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> Page[WaitingStep]:
        """Steps waiting for a decision, the longest-waiting first."""
        found = [
            t
            for t in await self.storage.inflight_tasks()
            if t.status == S.WAITING
            and (kind is None or t.kind == kind)
            and (session_id is None or t.session_id == session_id)
        ]
        found.sort(key=lambda t: (t.started_at or t.created_at, t.task_id))
        page = found[offset : offset + limit]
        workflows: dict[str, str | None] = {}
        for task in page:
            if task.session_id not in workflows:
                session = await self.storage.get_session(task.session_id)
                workflows[task.session_id] = session.workflow_id if session else None
        items = [_waiting_step(t, workflows.get(t.session_id)) for t in page]
        return Page(items=items, total=len(found), offset=offset, limit=limit)

    async def describe(self, task: TaskRun) -> dict[str, Any]:
        """A waiting step as an event's data (approval.needed)."""
        session = await self.storage.get_session(task.session_id)
        step = _waiting_step(task, session.workflow_id if session else None)
        return {
            **step.model_dump(mode="json", by_alias=True),
            "approveUrl": f"/v1/opscore/tasks/{task.task_id}/approve",
            "rejectUrl": f"/v1/opscore/tasks/{task.task_id}/reject",
        }

    async def approve(
        self, task_id: str, *, by: str, comment: str | None, payload: dict[str, Any]
    ) -> TaskRun:
        """An operator approves a waiting approval step: it completes, the run goes on."""
        task = await self._waiting(task_id, "approval")
        decision = self._decision("approved", by, approved=True, comment=comment, payload=payload)
        return await self._decided(task, decision, completes=True)

    async def reject(
        self, task_id: str, *, by: str, comment: str | None, payload: dict[str, Any]
    ) -> TaskRun:
        """An operator rejects a waiting approval step: it fails (its fallback runs, else the
        run fails), or completes with approved=false when its wait says ``onReject:
        continue``."""
        task = await self._waiting(task_id, "approval")
        decision = self._decision("rejected", by, approved=False, comment=comment, payload=payload)
        proceed = task.wait is not None and task.wait.on_reject == "continue"
        return await self._decided(task, decision, completes=proceed)

    async def signal(
        self, session_id: str, name: str, *, by: str, payload: dict[str, Any]
    ) -> list[TaskRun]:
        """Send a named signal to a run: every step of it waiting for that signal completes
        with the payload; an A2A agent's task that asked for input (the signal is named after
        its step) gets the payload as that input and runs on. 409 (SIGNAL_NOT_AWAITED) when
        none waits for it now."""
        session = await self.engine.get_session(session_id)
        waiting = [
            t
            for t in await self.storage.session_tasks(session_id)
            if t.status == S.WAITING
            and (t.kind == "signal" or t.a2a is not None)
            and t.wait
            and t.wait.signal == name
        ]
        if not waiting or session.status != SessionStatus.RUNNING:
            raise ConflictError(
                f"No step of session '{session_id}' waits for signal '{name}' now "
                f"(the session is {session.status.value})",
                code="SIGNAL_NOT_AWAITED",
            )
        decided = []
        for task in waiting:
            decision = self._decision("signalled", by, signal=name, payload=payload)
            if task.kind == "agent":
                done = await self.resume(task, decision) if self.resume else None
            else:
                done = await self._apply(task, decision, completes=True)
            if done is not None:
                decided.append(done)
        if not decided:
            raise ConflictError(
                f"Signal '{name}' for session '{session_id}' came too late: its steps were "
                "decided meanwhile",
                code="SIGNAL_NOT_AWAITED",
            )
        return decided

    async def sweep(self, now: datetime, tasks: list[TaskRun]) -> None:
        """Decide every wait whose timeout ran out, as its ``onTimeout`` says. ``tasks``: the
        in-flight tasks as read for this round (inflight_sweeps.py)."""
        for task in tasks:
            if task.status != S.WAITING or task.deadline is None or task.deadline > now:
                continue
            wait = task.wait
            default = "reject" if task.kind == "approval" else "fail"
            verdict = (wait.on_timeout if wait else None) or default
            decision = self._decision(
                "timed_out",
                TIMEOUT_DECIDER,
                approved=(verdict == "approve") if task.kind == "approval" else None,
                signal=wait.signal if wait else None,
                comment=f"no decision within {wait.timeout_seconds:g}s" if wait else None,
            )
            await self._apply(task, decision, completes=verdict in ("approve", "complete"))

    # --- inside --------------------------------------------------------------------------------

    async def _waiting(self, task_id: str, kind: str) -> TaskRun:
        task = await self.engine.get_task(task_id)
        if task.kind != kind:
            hint = (
                f"; it waits for signal '{task.wait.signal}': send it to its session"
                if task.wait and task.wait.signal
                else ""
            )
            raise ConflictError(
                f"Task '{task_id}' is a {task.kind} step, not an approval{hint}",
                code="NOT_AN_APPROVAL",
            )
        if task.status != S.WAITING:
            raise ConflictError(
                f"Task '{task_id}' is {task.status.value}; only a waiting step can be decided",
                code="TASK_NOT_WAITING",
            )
        return task

    def _decision(self, outcome: str, by: str, **fields: Any) -> Decision:
        return Decision.model_validate(
            {"outcome": outcome, "decided_by": by, "decided_at": self.engine.clock(), **fields}
        )

    async def _decided(self, task: TaskRun, decision: Decision, *, completes: bool) -> TaskRun:
        done = await self._apply(task, decision, completes=completes)
        if done is None:
            current = await self.engine.get_task(task.task_id)
            raise ConflictError(
                f"Task '{task.task_id}' was decided meanwhile (it is {current.status.value})",
                code="TASK_NOT_WAITING",
            )
        return done

    async def _apply(self, task: TaskRun, decision: Decision, *, completes: bool) -> TaskRun | None:
        """The one move that ends a wait; None when another decision got there first."""
        engine = self.engine
        result = decision.model_dump(mode="json", by_alias=True)
        error = None if completes else _failure(decision)
        moved = await move_task(
            self.storage,
            task.task_id,
            S.COMPLETED if completes else S.FAILED,
            only_from=frozenset({S.WAITING}),
            result=result,
            decision=decision,
            error=error,
            finished_at=engine.clock(),
            deadline=None,
        )
        if moved is None:
            return None
        engine.observe("decided", moved, outcome=decision.outcome)
        log_operation(
            "task.decided",
            {
                "sessionId": task.session_id,
                "taskId": task.task_id,
                "outcome": decision.outcome,
                "decidedBy": decision.decided_by,
                "completes": completes,
            },
            level=logging.INFO if completes else logging.WARNING,
        )
        if completes:
            await engine.advance(task.session_id)
        else:
            await self.outcomes.after_exhausted(moved)
        return moved


def _failure(decision: Decision) -> str:
    comment = f": {decision.comment}" if decision.comment else ""
    if decision.outcome == "rejected":
        return f"rejected by {decision.decided_by}{comment}"
    return f"no decision in time{comment}"


def _waiting_step(task: TaskRun, workflow_id: str | None) -> WaitingStep:
    wait = task.wait
    return WaitingStep(
        task_id=task.task_id,
        session_id=task.session_id,
        workflow_id=workflow_id,
        step_id=task.step_id,
        name=task.name,
        kind=task.kind,
        signal=wait.signal if wait else None,
        prompt=wait.prompt if wait else "",
        parameters=task.resolved_parameters or {},
        waiting_since=task.started_at,
        deadline=task.deadline,
        on_timeout=(wait.on_timeout if wait else None)
        or ("reject" if task.kind == "approval" else "fail"),
    )
