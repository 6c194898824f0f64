"""PostgresStorage: a task's change and the run's next step it lets start, in one statement
(``update_task_and_next``; ``record_report`` writes the same step with a report).

The next step is decided on this process's sight of its row (``_seen``): with none, the task
alone is changed and the caller advances the run as before. The step is moved only if the
task moved and the step still holds the document decided on; when it did not, the task's
change stands and the run advances as before.
"""

from __future__ import annotations

from typing import Any

from ...models import TaskRun
from ..parsed import PARSED
from ..report_and_task import QueuedNext, TaskUpdate, next_queued
from ..rules import task_change_applies
from ..seen import UNSEEN
from .base import CHANNEL, _Base, queued_after
from .runs import _READ_TASK, _SET_TASK

# $1 task, $2 its status, $3 its document, $4 the document decided on; $5 the next step, $6
# its status, $7 its document, $8 the document decided on; queued at $9 (priority), $10
# (ready), NOTIFY $11 from $12. Answers (task written, the task's document, step queued).
_SET_TASK_AND_NEXT = f"""
WITH moved AS (
    UPDATE opscore_tasks SET status = $2, doc = $3 WHERE task_id = $1 AND doc = $4
    RETURNING task_id),
next_moved AS (
    UPDATE opscore_tasks SET status = $6, doc = $7
    WHERE task_id = $5 AND doc = $8 AND EXISTS (SELECT 1 FROM moved) RETURNING task_id),
{queued_after("next_moved", 9, 11, "next_queued")}
SELECT (SELECT count(*) FROM moved) = 1, (SELECT doc FROM opscore_tasks WHERE task_id = $1),
    (SELECT count(*) FROM next_queued_woken) > 0
"""


class NextSteps(_Base):
    def _next_step(self, then: QueuedNext) -> tuple[TaskRun | None, tuple[Any, ...]]:
        """The next step as ``then`` queues it, decided on this process's sight of it, and
        the statement's parameters for it; (None, ()) when there is no such sight or it is
        no longer pending (the run then advances as before)."""
        doc = self._seen.get(f"task:{then.task_id}")
        if doc is UNSEEN or doc is None:
            return None, ()
        queued = next_queued(then, PARSED.load(TaskRun, doc))
        if queued is None:
            return None, ()
        raw = PARSED.dump(queued)
        args = (then.task_id, queued.status.value, raw, doc, queued.priority, then.ready_at)
        return queued, (*args, CHANNEL, self._token)

    def _next_landed(
        self, queued: TaskRun | None, then_args: tuple[Any, ...], written: bool
    ) -> TaskRun | None:
        """After a statement that carried ``_next_step``'s parameters: the step as queued,
        remembered as this process's sight of it; None when it had changed since (its sight
        is forgotten, and the run advances as before)."""
        if queued is None:
            return None
        if written:
            self._seen.put(f"task:{queued.task_id}", then_args[2])
            return queued
        self._seen.forget(f"task:{queued.task_id}")
        return None

    async def _change_and_queue_next(
        self, task_id: str, update: TaskUpdate, then: QueuedNext
    ) -> tuple[TaskRun | None, TaskRun | None]:
        """The task's change (no slot: the caller frees it after) and ``then``, in one
        statement; decided first on the documents this process last saw, as ``_Base._cas``."""
        task_key = f"task:{task_id}"
        async with self._turns.turn((task_key, f"task:{then.task_id}")), self._conn() as conn:
            doc = self._seen.get(task_key)
            fresh = doc is UNSEEN
            if fresh:
                doc = await self._read_afresh(conn, task_key, _READ_TASK, task_id)
            while True:
                task = PARSED.load(TaskRun, doc) if isinstance(doc, str) else None
                if task is None or not task_change_applies(task, update.expect, update.attempt):
                    if fresh:
                        return None, None
                    doc, fresh = await self._read_afresh(conn, task_key, _READ_TASK, task_id), True
                    continue
                changed = task.model_copy(update=update.changes)
                raw = PARSED.dump(changed)
                queued, then_args = self._next_step(then)
                head = (task_id, changed.status.value, raw, doc)
                if queued is None:  # the step is no longer pending, as this process saw it
                    written, current = await conn.fetchrow(_SET_TASK, *head)
                    next_written = False
                else:
                    answer = await conn.fetchrow(_SET_TASK_AND_NEXT, *head, *then_args)
                    written, current, next_written = answer
                if written:
                    self._seen.put(task_key, raw)
                    return changed, self._next_landed(queued, then_args, next_written)
                doc, fresh = current, True  # it changed since: decide again on what it is
                self._seen.put(task_key, doc)
