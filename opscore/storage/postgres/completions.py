"""PostgresStorage: a task's change and what it lets follow, in one statement: the run's next
step it lets start, or the run it completes (``update_task_and_next``; ``record_report``
writes the same with a report).

Either is decided on this process's sight of its row (``_seen``): with none, the task alone
is changed and the caller advances or completes the run as before. The step (or the run) is
moved only if the task moved and its row still holds the document decided on; when it did
not, the task's change stands and the caller goes on as before.
"""

from __future__ import annotations

from typing import Any

from ...models import Session, TaskRun
from ..parsed import PARSED
from ..report_and_task import QueuedNext, RunEnd, TaskUpdate, next_queued, run_ended
from ..rules import task_change_applies
from ..seen import UNSEEN
from .base import CHANNEL, _Base, doc_unless, queued_after, run_ended_after
from .runs import _READ_TASK, _SET_TASK, _session_row

_MOVED = """
WITH moved AS (
    UPDATE opscore_tasks SET status = $2, doc = $3 WHERE task_id = $1 AND doc = $4
    RETURNING task_id),"""
# the task's document in the answer, only when it was not written (base.doc_unless)
_TASK_UNLESS_MOVED = doc_unless("EXISTS (SELECT 1 FROM moved)", "opscore_tasks", "task_id", "$1")
# $1 task, $2 its status, $3 its document, $4 the document decided on; $5 the next step, $6
# its status, $7 its document, $8 the document decided on; queued at $9 (priority), $10
# (ready), NOTIFY $11 from $12. Answers (task written, the task's document, step queued).
_SET_TASK_AND_NEXT = f"""{_MOVED}
next_moved AS (
    UPDATE opscore_tasks SET status = $6, doc = $7
    WHERE task_id = $5 AND doc = $8 AND EXISTS (SELECT 1 FROM moved) RETURNING task_id),
{queued_after("next_moved", 9, 11, "next_queued")}
SELECT (SELECT count(*) FROM moved) = 1, {_TASK_UNLESS_MOVED},
    (SELECT count(*) FROM next_queued_woken) > 0
"""
# ... or, from $5, the run's session completed (base.run_ended_after); the third answer says
# whether it was.
_SET_TASK_AND_END = f"""{_MOVED}{run_ended_after("moved", 5)}
SELECT (SELECT count(*) FROM moved) = 1, {_TASK_UNLESS_MOVED},
    (SELECT count(*) FROM run_ended) > 0
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

    def _run_end(self, end: RunEnd) -> tuple[Session | None, tuple[Any, ...]]:
        """The run as ``end`` completes it, decided on this process's sight of its session,
        and the statement's parameters for it (``run_ended_after``); (None, ()) when there
        is no such sight or the run is not running (the caller completes it as before)."""
        doc = self._seen.get(f"session:{end.session_id}")
        if doc is UNSEEN or doc is None:
            return None, ()
        ended = run_ended(end, PARSED.load(Session, doc))
        return (ended, (*_session_row(ended), doc)) if ended is not None else (None, ())

    def _followed(
        self, queued: TaskRun | None, ended: Session | None, tail: tuple[Any, ...], written: bool
    ) -> tuple[TaskRun | None, Session | None]:
        """After a statement that carried ``_what_follows``'s parameters: the step as queued
        or the run as completed, remembered as this process's sight of its row; (None, None)
        when that row had changed since (its sight is forgotten, and the caller goes on as
        before: the run advances, or is completed, on its own)."""
        if queued is not None:
            key, doc = f"task:{queued.task_id}", tail[2]
        elif ended is not None:
            key, doc = f"session:{ended.session_id}", tail[5]
        else:
            return None, None
        if not written:
            self._seen.forget(key)
            return None, None
        self._seen.put(key, doc)
        return queued, ended

    def _what_follows(
        self, update: TaskUpdate
    ) -> tuple[TaskRun | None, Session | None, tuple[Any, ...]]:
        """What a completion writes with it, as this process saw the rows: the next step as
        queued or the run as completed (at most one of them), and their parameters."""
        if update.then is not None:
            queued, args = self._next_step(update.then)
            return queued, None, args
        if update.ends_run is not None:
            ended, args = self._run_end(update.ends_run)
            return None, ended, args
        return None, None, ()

    async def _change_and_what_follows(
        self, task_id: str, update: TaskUpdate
    ) -> tuple[TaskRun | None, TaskRun | None, Session | None]:
        """The task's change (no slot: the caller frees it after) and what follows it
        (``_what_follows``), in one statement; decided first on the documents this process
        last saw, as ``_Base._cas``."""
        task_key = f"task:{task_id}"
        then = update.then
        turns = (task_key, f"task:{then.task_id}") if then is not None else (task_key,)
        async with self._turns.turn(turns), self._conn() as conn:
            doc = self._seen.get(task_key)
            fresh = doc is UNSEEN
            if fresh:
                doc = await self._read_afresh(conn, task_key, _READ_TASK, task_id)
            while True:
                task = PARSED.load(TaskRun, doc) if isinstance(doc, str) else None
                if task is None or not task_change_applies(task, update.expect, update.attempt):
                    if fresh:
                        return None, None, None
                    doc, fresh = await self._read_afresh(conn, task_key, _READ_TASK, task_id), True
                    continue
                changed = task.model_copy(update=update.changes)
                raw = PARSED.dump(changed)
                queued, ended, tail = self._what_follows(update)
                head = (task_id, changed.status.value, raw, doc)
                if queued is not None:
                    written, current, tail_written = await conn.fetchrow(
                        _SET_TASK_AND_NEXT, *head, *tail
                    )
                elif ended is not None:
                    written, current, tail_written = await conn.fetchrow(
                        _SET_TASK_AND_END, *head, *tail
                    )
                else:  # nothing follows with it, as this process saw the rows
                    written, current = await conn.fetchrow(_SET_TASK, *head)
                    tail_written = False
                if written:
                    self._seen.put(task_key, raw)
                    return changed, *self._followed(queued, ended, tail, tail_written)
                doc, fresh = current, True  # it changed since: decide again on what it is
                self._seen.put(task_key, doc)
