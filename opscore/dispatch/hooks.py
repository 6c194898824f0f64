"""What the dispatcher asks of the workflow room (``workflow.handover.Handovers``): what a
hand-over means for a task. Dispatch knows queues, agents and transports, not runs."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from ..models import Agent, TaskRun
from .transports import HandoverAnswer


class DispatchHooks(Protocol):
    """What the dispatcher asks of the workflow room (``workflow.outcomes.TaskOutcomes``)."""

    async def mark_dispatched(
        self, task: TaskRun, agent: Agent, now: datetime, *, ack_entry: bool = False
    ) -> TaskRun | None:
        """Start an attempt of a queued task on ``agent``, taking one of its slots (and with
        ``ack_entry`` acknowledging its queue entry: ``Storage.update_task``) in the same
        write; None if it is no longer queued; NoFreeSlotError when the agent has no free
        slot."""
        ...

    async def dispatch_failed(
        self, task: TaskRun, error: str, *, unreachable: bool, timed_out: bool = False
    ) -> None:
        """The hand-over of this attempt failed: not delivered, or no answer came;
        ``unreachable``: no connection to the agent could be made at all; ``timed_out``: no
        answer within the attempt's timeout."""
        ...

    async def handover_answered(self, task: TaskRun, agent: Agent, answer: HandoverAnswer) -> None:
        """The agent (or AgentKit) answered the hand-over of this attempt."""
        ...

    async def budget_refused(self, task: TaskRun, reason: str) -> None:
        """The task's workflow spent its budget, and says fail: the task fails unsent."""
        ...
