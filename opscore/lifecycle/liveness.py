"""Liveness: silence is not death. Which agents are offline, and which are back.

The model (docs/liveness.md):

- an agent that declared ``heartbeatIntervalSeconds`` is offline after
  ``OPSCORE_HEARTBEAT_MISSES`` intervals without a report or a heartbeat;
- an agent that declared none (every AgentKit agent) is probed once it has been silent for
  ``OPSCORE_AGENT_OFFLINE_AFTER``, then every ``OPSCORE_PROBE_INTERVAL``: any HTTP answer at
  its contactEndpoint means reachable, and only ``OPSCORE_PROBE_MISSES`` probes in a row
  without one make it offline. Busy agents are judged the same way, so a long task on a
  reachable agent is never taken away from it;
- an agent with neither a heartbeat nor an endpoint cannot be asked, and is offline after
  ``OPSCORE_AGENT_OFFLINE_AFTER`` of silence;
- an offline agent that reports, sends a heartbeat or answers a probe is available again.

Probes are bounded: at most ``OPSCORE_PROBE_CONCURRENCY`` in flight, at most one per agent,
and each agent's probe time is spread by ``OPSCORE_PROBE_JITTER`` so a fleet is not probed in
one burst.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta

from ..config import Settings
from ..dispatch.probes import Prober
from ..errors import StorageError
from ..models import Agent, utcnow
from ..storage.base import Storage
from .state import OFFLINE, AgentStates

logger = logging.getLogger("opscore.liveness")
# states that keep an agent from new work while it is in them
BUSY_STATES = frozenset({"active", "busy"})
# probes waiting for a slot, per slot: enough for a 10,000-agent fleet at the defaults, bounded
_QUEUED_PER_SLOT = 256


class Liveness:
    """A sweep, run by the dispatcher's loop, that judges silent agents and starts probes."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        states: AgentStates,
        prober: Prober | None = None,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_dropped_reports: Callable[[int], object] | None = None,
        on_probe: Callable[[bool], object] | None = None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.states = states
        self.prober = prober or Prober(timeout=settings.probe_timeout)
        self.clock = clock
        self.on_dropped_reports = on_dropped_reports
        self.on_probe = on_probe
        self._last_sweep: datetime | None = None
        self._probing: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(settings.probe_concurrency)

    async def sweep(self, now: datetime) -> None:
        """Judge every silent agent (at most once per ``OPSCORE_LIVENESS_INTERVAL``)."""
        settings = self.settings
        every = timedelta(seconds=settings.liveness_interval)
        if self._last_sweep is not None and now - self._last_sweep < every:
            return
        self._last_sweep = now
        dropped = await self.states.drop_held_reports(now)
        if dropped and self.on_dropped_reports is not None:
            self.on_dropped_reports(dropped)
        # nobody is judged on less silence than one sweep interval
        floor = min(settings.agent_offline_after, settings.liveness_interval)
        for agent in await self.storage.stale_agents(seen_before=now - timedelta(seconds=floor)):
            try:
                await self._judge(agent, now)
            except StorageError:
                raise  # the store is away: the whole sweep backs off (the dispatcher's loop)
            except Exception:  # one bad record must not stop the sweep for every other agent
                logger.exception("liveness check of agent %s failed", agent.agent_id)

    async def _judge(self, agent: Agent, now: datetime) -> None:
        settings = self.settings
        silence = (now - agent.last_seen).total_seconds()
        if agent.heartbeat_interval_seconds is not None:
            allowed = agent.heartbeat_interval_seconds * settings.heartbeat_misses
            if silence >= allowed and agent.state != OFFLINE:
                await self.states.mark_offline(
                    agent, f"no heartbeat for {silence:.0f}s ({settings.heartbeat_misses} missed)"
                )
            return
        if silence < settings.agent_offline_after:
            return
        if not agent.contact_endpoint:
            if agent.state != OFFLINE:
                await self.states.mark_offline(
                    agent, f"no report for {settings.agent_offline_after:g}s and no endpoint"
                )
            return
        if self._probe_due(agent, now):
            self._start_probe(agent)

    def _probe_due(self, agent: Agent, now: datetime) -> bool:
        if agent.agent_id in self._probing:
            return False
        if agent.last_probe_at is None or agent.last_probe_at < agent.last_seen:
            return True  # silent past the window and not probed since it was last seen
        return now >= agent.last_probe_at + timedelta(seconds=self.probe_period(agent.agent_id))

    def probe_period(self, agent_id: str) -> float:
        """Seconds between two probes of this agent: the interval, moved by its own share of
        the jitter band, so a fleet's probes spread evenly over the interval."""
        interval = self.settings.probe_interval
        return interval * (1 + self.settings.probe_jitter * _unit(agent_id))

    def _start_probe(self, agent: Agent) -> None:
        if len(self._probing) >= self.settings.probe_concurrency * _QUEUED_PER_SLOT:
            return  # plenty queued already (a task each); the next sweep picks the rest
        task = asyncio.create_task(self._probe(agent), name=f"opscore-probe-{agent.agent_id}")
        self._probing[agent.agent_id] = task
        task.add_done_callback(lambda _: self._probing.pop(agent.agent_id, None))

    async def _probe(self, agent: Agent) -> None:
        try:
            async with self._slots:
                assert agent.contact_endpoint is not None
                ok = await self.prober.reachable(agent.contact_endpoint)
                if self.on_probe is not None:
                    self.on_probe(ok)
                await self.record_probe(agent.agent_id, ok)
        except StorageError as exc:  # the verdict is lost; the agent is probed again later
            logger.debug("probe verdict of %s not recorded: %s", agent.agent_id, exc.message)
        except Exception:
            logger.exception("probe of agent %s failed", agent.agent_id)

    async def record_probe(self, agent_id: str, reachable: bool) -> None:
        """Apply a probe's verdict: an answer resets the count (and brings an offline agent
        back); ``OPSCORE_PROBE_MISSES`` misses in a row make it offline."""
        current = await self.storage.get_agent(agent_id)
        if current is None:
            return  # deregistered meanwhile
        now = self.clock()
        failures = 0 if reachable else current.probe_failures + 1
        await self.storage.update_agent(
            agent_id, {"last_probe_at": now, "probe_failures": failures}
        )
        if reachable:
            if current.state == OFFLINE:
                await self.states.mark_reachable(current, "answered a probe")
            elif current.state in BUSY_STATES and not current.active_tasks:
                # silent for the whole window, no Ops-Core task in flight, and up: its last
                # report ('idle' after 'active') was lost, as AgentKit's SDK never retries one
                await self.states.mark_reachable(current, "answered a probe; no task in flight")
        elif failures >= self.settings.probe_misses and current.state != OFFLINE:
            await self.states.mark_offline(
                current, f"unreachable: {failures} probes of its contactEndpoint got no answer"
            )

    async def drain(self) -> None:
        """Wait until the probes in flight have given their verdicts."""
        while self._probing:
            await asyncio.wait(list(self._probing.values()))

    async def close(self) -> None:
        """Stop the probes in flight and close their HTTP client."""
        for task in list(self._probing.values()):
            task.cancel()
        if self._probing:
            await asyncio.wait(list(self._probing.values()), timeout=5)
        await self.prober.close()


def _unit(agent_id: str) -> float:
    """A fixed number in [-1, 1) per agent: where in the jitter band its probes fall."""
    return (zlib.crc32(agent_id.encode()) % 2000) / 1000 - 1
