"""Which agent takes a task: the candidates (its agent, or agents with its capability), in
turn, with a free slot, under the capability's limit and within their budgets."""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from ..models import Agent, TaskRun
from .affinity import ReportedHere
from .budgets import BudgetGate
from .limits import CapabilityLimits
from .slots import PassFleet

T = TypeVar("T")


class AgentPicker:
    """Starts a task on one suitable agent with a free slot (round-robin among the
    candidates; with other replicas up, those reporting to another replica last)."""

    def __init__(self, limits: CapabilityLimits, budgets: BudgetGate) -> None:
        self.limits = limits
        self.budgets = budgets
        self.affinity = ReportedHere()  # told how many replicas are up by the assembly
        self._rotation = itertools.count()

    async def pick(
        self,
        task: TaskRun,
        fleet: PassFleet,
        now: datetime,
        start: Callable[[Agent], Awaitable[T | None]],
    ) -> tuple[Agent, T] | None:
        """The agent on which ``start`` started the task, with what it answered (None: the
        agent had no free slot, the next one is tried), or None (the task keeps its place in
        the queue). What ``start`` raises gives the capability slot back and passes on."""
        candidates = fleet.candidates(task)
        free = fleet.free
        if not candidates or not await self.limits.acquire(task):  # or at the capability limit
            return None
        try:
            budgeted = await self.budgets.any_for_agents()
            first = next(self._rotation) % len(candidates)
            in_turn = itertools.chain(
                itertools.islice(candidates, first, None), itertools.islice(candidates, first)
            )
            for agent in self.affinity.ordered(in_turn):
                if free.of(agent) <= 0:
                    continue
                if budgeted and await self.budgets.agent_spent(agent.agent_id, now):
                    continue  # this agent spent its budget today
                # taken before the write: the other tasks of the chunk are placed meanwhile
                free.take(agent)
                try:
                    started = await start(agent)
                except BaseException:
                    free.give_back(agent)
                    raise
                if started is not None:
                    return agent, started
                free.exhaust(agent)  # another replica took its last slot
        except BaseException:
            await self.limits.release(task)
            raise
        await self.limits.release(task)
        return None
