"""RedisStorage: a run as it starts, written in one script (``Storage.save_run``).

The run's tasks, its first steps queued, and its session went in three round trips (the
tasks' MGET and MULTI/EXEC, the session's script) and one more per first step (its move and
queue entry); here they are one script (``scripts.SAVE_RUN``).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from typing import Any

from ...models import Session, TaskRun
from ...models.sweep_due import INFLIGHT, sweep_due
from ..parsed import PARSED
from ..rules import ready_time
from ..seen import UNSEEN
from .base import _due_score
from .queue_scripts import SEQ_SPAN
from .scripts import _score
from .sessions import SessionRecords


class RunStarts(SessionRecords):
    async def save_run(
        self, session: Session, tasks: Iterable[TaskRun], *, queued: Collection[str] = ()
    ) -> None:
        """One script: the tasks (each joins the run's list the first time it is written,
        and those named in ``queued`` are queued as ``enqueue`` queues them), then the
        session as ``save_session`` writes it."""
        key, raw = self.k("session", session.session_id), PARSED.dump(session)
        new = "1" if self._seen.get(key) is UNSEEN else "0"  # a hint (see SAVE_SESSION)
        args: list[Any] = [session.session_id, raw, session.status.value]
        args += [self.k("sessions", ""), new, self.k("task", ""), SEQ_SPAN, time.time()]
        written = []
        for task in tasks:
            task_raw = PARSED.dump(task)
            written.append((self.k("task", task.task_id), task_raw))
            at = ready_time(task).timestamp() if task.task_id in queued else ""
            inflight = _score(_due_score(sweep_due(task))) if task.status in INFLIGHT else ""
            args += [task.task_id, task_raw, inflight, at, task.priority]
        keys = [key, self.k("sessions"), self.k("seq", "sessions")]
        keys += [self.k("session_tasks", session.session_id), self.inflight_key]
        keys += self._enqueue_keys
        place = await self._script("save_run", keys=keys, args=args)
        self._seen.put(key, raw)
        self._seen.put(self._place_key(session.session_id), str(place))
        for task_key, task_raw in written:
            self._seen.put(task_key, task_raw)
