"""The steps a new run starts with, queued in the write that creates the run.

A run's first steps were queued one by one after the run was written (``WorkflowEngine.
advance``): one more store call per step, on the path of every run. Nobody else has the run's
id before it is written, so the plain ones (an agent step with no prerequisite, condition or
fallback role, whose parameters resolve) can be moved to ``queued`` here, exactly as
``WorkflowEngine.enqueue_task`` would move them, and written with the run
(``Storage.save_run(queued=...)``). Everything else stays pending for ``advance``, as before.
"""

from __future__ import annotations

from datetime import datetime

from ..models import Session, TaskRun, TaskStatus
from .step_inputs import queued_fields, substitution_context
from .substitution import SubstitutionTooLargeError, TemplateError, substitute
from .transitions import task_move

S = TaskStatus


def first_steps_queued(
    session: Session, tasks: list[TaskRun], now: datetime, *, parameter_limit: int
) -> tuple[list[TaskRun], list[str]]:
    """The run's tasks with the plain first steps moved to queued, and those steps' ids."""
    fallbacks = {t.step_id for t in tasks if t.fallback_for}
    context = substitution_context(session, tasks)
    out: list[TaskRun] = []
    queued: list[str] = []
    for task in tasks:
        plain = (
            task.status == S.PENDING
            and task.kind == "agent"
            and not task.depends_on
            and task.when is None
            and task.step_id not in fallbacks
        )
        if not plain:
            out.append(task)
            continue
        try:
            resolved = substitute(task.parameters, context, limit=parameter_limit)
        except (SubstitutionTooLargeError, TemplateError):
            out.append(task)  # advance refuses it, as for any step
            continue
        fields = queued_fields(task, resolved, now)
        move = task_move(S.QUEUED, only_from=frozenset({S.PENDING}), **fields)
        out.append(task.model_copy(update=move.changes))
        queued.append(task.task_id)
    return out, queued
