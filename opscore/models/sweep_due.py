"""When a sweep may next have to act on a task in flight: what the stores index it by.

The sweeps of tasks in flight (task and wait timeouts, pull workers' leases, A2A polls;
``workflow/inflight_sweeps.py``) run twice a second. Reading every task in flight at each
round made a replica's idle cost grow with the tasks in flight (about 1% of a core per 1,000
on Redis, and a read of every record twice a second); with each task indexed by the earliest
moment any sweep may act on it, a round reads only those that are due.

The index is a lower bound, never a verdict: each sweep still checks its own condition on
the tasks it is given. A task that is due and that no sweep acts on (its answer is being
written) is read again at the next round, as before. PostgreSQL computes the same rule in
SQL (``opscore_sweep_at`` in ``storage/postgres/migrations.py``); the contract suite checks
that every store answers alike.
"""

from __future__ import annotations

from datetime import UTC, datetime

from .runs import TaskRun, TaskStatus

S = TaskStatus
# tasks a sweep may act on while they are handed over or running: timeouts, leases, A2A polls
_WORKING = frozenset({S.DISPATCHED, S.RUNNING})
INFLIGHT = frozenset({S.DISPATCHED, S.RUNNING, S.WAITING})  # what inflight_tasks returns
# an A2A task never heard of yet is due at once
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


def sweep_due(task: TaskRun) -> datetime | None:
    """The earliest moment a sweep may have to act on ``task``; None when none will (it is not
    in flight, or it waits for a decision without a timeout) until it is written again.

    - its deadline: an attempt's timeout (dispatched, running) or a wait's (waiting);
    - a pull worker's lease, while the task is handed over or running;
    - an A2A agent's next poll (``nextCheckAt``; a reference written before it existed is
      due from its last check), while the task is handed over or running."""
    if task.status not in INFLIGHT:
        return None
    due = task.deadline
    if task.status in _WORKING:
        if task.pull and task.lease_until is not None:
            due = task.lease_until if due is None else min(due, task.lease_until)
        if task.a2a is not None:
            ref = task.a2a
            poll = ref.next_check_at or ref.checked_at or LONG_AGO
            due = poll if due is None else min(due, poll)
    return due
