"""The async Storage protocol every backend implements.

Services talk only to this protocol. Methods that must be atomic across concurrent callers
(``record_state``, ``update_task``, ``update_session``, ``claim_agent_slot``, ``dequeue_ready``,
``remember_idempotency_key``) say so; a backend must keep that promise even when several
Ops-Core processes share it. Backends wrap driver failures in ``StorageError``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

import orjson

from ..models import (
    Agent,
    DeadLetter,
    Page,
    QueueEntry,
    Session,
    StateRecord,
    TaskRun,
    WorkflowTemplate,
)
from .report_and_task import ReportPlan, ReportWritten, TaskUpdate, TaskWritten


class QueueStore(Protocol):
    """The task queue, part of ``Storage``."""

    async def enqueue(self, task_id: str, *, priority: int, ready_at: datetime) -> None:
        """Queue a task; it becomes claimable at ``ready_at``. Re-enqueueing replaces it."""

    async def dequeue_ready(
        self, now: datetime, limit: int, *, follows: bool = False
    ) -> list[QueueEntry]:
        """Atomically claim and return up to ``limit`` ready entries.

        Order: higher priority first, then first-in-first-out. An entry is returned to exactly
        one caller; shared backends hold it under a lease until ``ack`` or ``requeue``.
        ``follows`` (other replicas are up): a shared store also reads, in the same round
        trip, the row each task's completion may write along (``TaskRun.next_step``'s, or
        its run's session when ``ends_run``), which this replica may never have seen.
        """

    async def ack(self, task_ids: Iterable[str]) -> None:
        """Confirm dequeued entries were handled. Shared backends lease entries on dequeue
        and give unacknowledged ones to another dispatcher when the lease expires."""

    async def requeue(self, entries: Iterable[QueueEntry]) -> None:
        """Put entries back keeping their original order (a dispatcher found no agent)."""

    async def queue_depth(self) -> int:
        """Entries waiting, ready or delayed."""

    async def next_ready_at(self, now: datetime) -> datetime | None:
        """When the earliest delayed entry becomes ready (None if nothing is delayed): how
        long the dispatcher may sleep. Never an entry a pass put back (``requeue``): that one
        waits for an agent, and a wakeup, not the clock, says when one is free. A store may
        answer an entry that came due at or before ``now`` and no pass has looked at yet
        (memory and Redis keep those apart until a dequeue moves them)."""

    async def oldest_ready_at(self, now: datetime) -> datetime | None:
        """When the entry that has waited longest became ready, among those ready at ``now``
        and not yet acknowledged (None when none waits): how far dispatch is behind. An entry
        a dispatch pass holds counts: it has not gone anywhere yet (the gauge would drop to
        0 for the moment of each pass), and one a replica died holding still waits."""


@runtime_checkable
class Storage(QueueStore, Protocol):
    # update_task calls asked in the same turn of the event loop cost less than one by one
    # (Redis: one script call, storage/redis/cas_groups.py): the dispatcher then starts the
    # tasks of a chunk of the queue at once, and otherwise one after the other
    writes_together: bool

    async def open(self) -> None:
        """Connect and prepare; raises StorageError when the store cannot be reached."""

    async def close(self) -> None:
        """Release connections; safe to call twice."""

    async def ping(self) -> None:
        """Cheap readiness check; raises StorageError when the store is unavailable."""

    def set_queue_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` (on the event loop) when another process may have queued work,
        so this one's dispatcher wakes at once rather than at its next interval. Set before
        ``open``. Stores that only one process uses ignore it."""

    # --- agents -----------------------------------------------------------------------------
    async def create_agent(self, agent: Agent) -> Agent | None:
        """Insert a new agent. Returns None when stored, else the existing agent (unchanged)."""

    async def save_agent(self, agent: Agent) -> None:
        """Insert or replace an agent record."""

    async def get_agent(self, agent_id: str) -> Agent | None:
        """Return the agent or None."""

    async def list_agents(
        self, *, state: str | None, capability: str | None, offset: int, limit: int
    ) -> Page[Agent]:
        """Agents ordered by id, filtered by current state and/or capability."""

    async def agents_by_state(self) -> dict[str | None, int]:
        """Agents per current state (None: never reported), counted where they are kept."""

    async def delete_agent(self, agent_id: str) -> Agent | None:
        """Remove the agent and its state history. Returns the removed agent or None."""

    async def update_agent(self, agent_id: str, changes: dict[str, Any]) -> Agent | None:
        """Atomically apply field changes; returns the new record or None if absent."""

    async def record_state(self, record: StateRecord, *, history_limit: int) -> tuple[Agent, bool]:
        """Atomically make ``record`` the agent's current state and prepend it to its history.

        Returns (agent, duplicate): duplicate is True, and nothing changes, when the record
        equals the current state exactly (same timestamp, state and details).
        Raises NotFoundError if the agent is unknown, ConflictError(STATE_OUT_OF_ORDER) if
        ``record.timestamp`` is older than the current state's. History keeps the newest
        ``history_limit`` records, and may hold a quarter more between two trims
        (``history_trims.py``; ``AgentStates.state_history`` shows the newest only).
        """

    async def record_report(
        self, record: StateRecord, *, history_limit: int, plan: ReportPlan
    ) -> ReportWritten:
        """``record_state``, and in the same atomic step the change ``plan`` makes to the
        task the report is about (``report_and_task.py``): one write per report, where a
        report and its task's move were two. The task's change applies only when its
        guards hold (as ``update_task``); a release it asks for frees the agent's slot in
        the same step. Raises as ``record_state``; a replay changes nothing.
        """

    async def state_history(self, agent_id: str, *, offset: int, limit: int) -> Page[StateRecord]:
        """The agent's state records, newest first."""

    async def available_agents(self, states: Collection[str]) -> list[Agent]:
        """Agents whose current state is in ``states`` and that have a free task slot."""

    async def stale_agents(
        self, *, seen_before: datetime, exclude_state: str | None = None
    ) -> list[Agent]:
        """Agents last seen before the given time whose state is not ``exclude_state``
        (every such agent when it is None, those that never reported included)."""

    async def prune_finished(
        self, *, finished_before: datetime | None, keep: int, batch: int = 500
    ) -> int:
        """Remove finished sessions (completed, failed, cancelled) that finished before
        ``finished_before`` or are older than the newest ``keep`` finished ones, with their
        tasks and dead letters; at most ``batch`` sessions a call. Returns how many went
        (call again while it returns ``batch``). Running sessions are never touched."""

    async def hold_report(self, record: StateRecord, *, max_agents: int) -> bool:
        """Keep a state report for an agent that is not registered yet, until it registers.

        One report per agent is kept: a newer one (by timestamp) replaces an older one.
        Returns False, keeping nothing, when ``max_agents`` agents already have one and this
        agent has none.
        """

    async def take_held_report(self, agent_id: str) -> StateRecord | None:
        """Remove and return the report held for an agent, or None. Atomic: of two callers,
        one gets it."""

    async def drop_held_reports(self, *, received_before: datetime) -> list[StateRecord]:
        """Remove and return the held reports received before the given time."""

    async def claim_agent_slot(self, agent_id: str, task_id: str) -> bool:
        """Atomically add task_id to the agent's active tasks if under its max_concurrency."""

    async def release_agent_slot(self, agent_id: str, task_id: str) -> None:
        """Remove task_id from the agent's active tasks; no error if absent."""

    # --- templates --------------------------------------------------------------------------
    async def save_workflow(self, template: WorkflowTemplate) -> WorkflowTemplate | None:
        """Insert a template version. Returns None when stored, else the existing version."""

    async def get_workflow(self, workflow_id: str, version: str | None) -> WorkflowTemplate | None:
        """The given version, or the newest one stored when version is None."""

    async def list_workflows(self, *, offset: int, limit: int) -> Page[WorkflowTemplate]:
        """The newest version of each template, ordered by id."""

    async def workflow_versions(self, workflow_id: str) -> list[str]:
        """All stored versions of one template, oldest first."""

    async def delete_workflow(self, workflow_id: str, version: str | None) -> int:
        """Delete one version, or all when version is None. Returns how many were removed."""

    # --- sessions ---------------------------------------------------------------------------
    async def save_session(self, session: Session) -> None:
        """Insert or replace a session."""

    async def get_session(self, session_id: str) -> Session | None:
        """Return the session or None."""

    async def list_sessions(
        self,
        *,
        status: str | None,
        workflow_id: str | None,
        agent_id: str | None,
        offset: int,
        limit: int,
    ) -> Page[Session]:
        """Sessions, newest first, filtered by status, template and pinned agent."""

    async def oldest_session(self, *, status: str, workflow_id: str) -> Session | None:
        """The oldest session of this status and template, or None: the run a limit admits
        next. A read that stops at its first match (a list's total would count every
        queued run at every run's end)."""

    async def update_session(
        self, session_id: str, changes: dict[str, Any], *, expect: Collection[str] | None = None
    ) -> Session | None:
        """Atomically apply changes if the session's status is in ``expect`` (any if None).

        Returns the new session, or None when it is absent or its status did not match.
        """

    # --- tasks ------------------------------------------------------------------------------
    async def save_tasks(self, tasks: Iterable[TaskRun]) -> None:
        """Insert or replace task runs."""

    async def save_run(
        self, session: Session, tasks: Iterable[TaskRun], *, queued: Collection[str] = ()
    ) -> None:
        """A run as it starts: its tasks and its session, inserted or replaced in one atomic
        step (one round trip on the shared stores, where ``save_tasks`` and ``save_session``
        took three): nobody sees the run without its tasks. The tasks named in ``queued``
        (moved to queued, with their ``ready_at``) are queued in the same step, at their
        priority, as ``enqueue`` queues them."""

    async def get_task(self, task_id: str) -> TaskRun | None:
        """Return the task run or None."""

    async def session_tasks(self, session_id: str) -> list[TaskRun]:
        """All task runs of one session, in creation order."""

    async def session_with_tasks(self, session_id: str) -> tuple[Session | None, list[TaskRun]]:
        """A session and its task runs (in creation order), read together: one round trip on
        the shared stores, where advancing a run after each task used to take two."""

    async def update_task(
        self,
        task_id: str,
        changes: dict[str, Any],
        *,
        expect: Collection[str] | None = None,
        attempt: int | None = None,
        enqueue_at: datetime | None = None,
        release_slot_of: str | None = None,
        claim_slot_of: str | None = None,
        ack_entry: bool = False,
    ) -> TaskRun | None:
        """Atomically apply changes if the task's status is in ``expect`` (any if None) and,
        when ``attempt`` is given, its attempt counter equals it. With ``enqueue_at``, the
        same atomic step queues the task (at its priority, as ``enqueue``): a crash cannot
        leave it queued with no queue entry, and it costs one round trip, not two.

        ``release_slot_of``: the agent whose slot the ending attempt held gives it up (as
        ``release_agent_slot``) when the change is applied, in the same atomic step on memory,
        SQLite and Redis (an attempt's end is one write, not two). PostgreSQL frees it right
        after, and queues a ``enqueue_at`` task only then: a task is never claimable while
        its old attempt still holds a slot, which its new attempt would take over.

        ``claim_slot_of``: the agent takes a slot for the task (as ``claim_agent_slot``) in
        the same atomic step (PostgreSQL: just before, given back when the change does not
        apply). An agent with no free slot, or gone, changes nothing and raises
        ``NoFreeSlotError``; a change that does not apply takes no slot. One change either
        releases a slot or claims one, not both.

        ``ack_entry``: the task's queue entry, leased by a dispatcher's pass
        (``dequeue_ready``), is acknowledged (as ``ack``) in the same atomic step when the
        change applies; an entry not leased (queued again) stays. The dispatcher starts a
        pass's only entry this way (an idle service's every pass), so its hand-over needs no
        ack of its own after it, and the agent's first report waits behind no write.

        Returns the new task, or None when it is absent or did not match. This is
        the compare-and-set every task state change goes through, so concurrent reporters,
        timeouts and dispatchers never both win.
        """

    async def update_task_and_next(self, task_id: str, update: TaskUpdate) -> TaskWritten:
        """``update_task`` with ``update`` (its changes, guards and slot release), and in the
        same atomic step the run's next step its ``then`` queues, or the run its ``ends_run``
        completes (as ``record_report`` does). Either is None in the answer when it was not
        written (not pending or running any more, or this process had no sight of it): then
        the caller advances or completes the run as before."""

    async def inflight_tasks(self, due_by: datetime | None = None) -> list[TaskRun]:
        """Tasks in status dispatched, running or waiting (for a decision); with ``due_by``,
        only those a sweep may have to act on by then (indexed: ``models/sweep_due.py``)."""

    # --- dead letters and idempotency -------------------------------------------------------
    async def add_dead_letter(self, entry: DeadLetter) -> None:
        """Record a task that exhausted its retries."""

    async def list_dead_letters(self, *, offset: int, limit: int) -> Page[DeadLetter]:
        """Dead letters, newest first."""

    async def pop_dead_letter(self, task_id: str) -> DeadLetter | None:
        """Remove and return a dead letter (for re-drive); None if absent."""

    async def remember_idempotency_key(
        self, key: str, session_id: str, *, now: datetime, ttl: float
    ) -> str | None:
        """Atomically map key -> session_id unless a live mapping exists; return that one."""

    async def forget_idempotency_key(self, key: str) -> None:
        """Drop a mapping (the run it named could not be started)."""

    # --- documents: subscriptions, deliveries, schedules ------------------------------------
    # JSON documents of a kind, by id, each optionally due at a time. What is due is claimed
    # under a lease, so of several replicas one takes each; the services own the documents'
    # shapes (events/, workflow/schedules.py), the store only keeps them.
    async def put_document(
        self,
        kind: str,
        doc_id: str,
        doc: str,
        *,
        due_at: datetime | None,
        expect: str | None = None,
        only_new: bool = False,
    ) -> bool:
        """Insert or replace a document, due for ``claim_due`` at ``due_at`` (never if None).
        With ``expect``, atomically: only if the stored document is exactly ``expect`` (an
        absent one never is); with ``only_new``, only if there is none. Returns whether it
        was written."""

    async def get_document(self, kind: str, doc_id: str) -> str | None:
        """The document or None."""

    async def list_documents(
        self, kind: str, *, prefix: str = "", offset: int, limit: int, newest_first: bool = False
    ) -> Page[str]:
        """Documents of a kind whose id starts with ``prefix``, ordered by id (descending
        with ``newest_first``)."""

    async def delete_document(self, kind: str, doc_id: str) -> bool:
        """Remove a document; False if it was absent."""

    async def claim_due(
        self, kind: str, now: datetime, *, limit: int, lease_seconds: float
    ) -> list[str]:
        """Atomically take up to ``limit`` documents of a kind due at ``now`` (the longest due
        first) and make them due again at ``now + lease_seconds``: each goes to one caller,
        and comes back if that caller dies before it puts the document again."""


# The telemetry channel is bounded in batches, so a batch is bounded in entries: when a batch
# held whatever one publish brought (up to 1,000 entries under load, 350 bytes each), the
# 2,000 batches kept came to hundreds of MB in the store, and a replica's first read of the
# newest ones brought all of that in at once.
TELEMETRY_BATCH = 100  # entries per stored batch at most
TELEMETRY_KEEP = 200  # batches kept: about the newest 20,000 entries (7 MB of spans and logs)


@runtime_checkable
class SharedTelemetry(Protocol):
    """What replicas sharing a store tell each other besides records: log records, finished
    spans and that they are up. Only shared stores (Redis, PostgreSQL) have it; a channel, not
    a record: bounded (the oldest entries go first), and losing an entry loses a log line."""

    async def publish_telemetry(self, origin: str, entries: list[tuple[str, str]]) -> None:
        """Append (kind, JSON) entries from one replica, stored in batches of at most
        ``TELEMETRY_BATCH``, keeping about the newest ``TELEMETRY_KEEP`` batches."""

    async def read_telemetry(
        self, after: str | None, limit: int, *, passing_over: str | None = None
    ) -> tuple[str | None, list[tuple[str, str, str, str]]]:
        """Entries of the ``limit`` batches after the cursor ``after`` (of the newest
        ``limit`` when None), oldest first, as (id, origin, kind, JSON), and the cursor to read
        on from: it moves whenever a batch was read. Entries from the origin ``passing_over``
        (the reader's own) are left out unparsed, the cursor moving past them: each replica
        reads the whole channel, most of it what it shipped itself."""


def telemetry_batches(entries: list[tuple[str, str]]) -> list[bytes]:
    """Entries as the JSON of the batches a channel stores: [[kind, data], ...] each, at most
    ``TELEMETRY_BATCH`` entries."""
    return [
        orjson.dumps([[kind, data] for kind, data in entries[i : i + TELEMETRY_BATCH]])
        for i in range(0, len(entries), TELEMETRY_BATCH)
    ]
