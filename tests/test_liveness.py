"""Liveness with an injected clock and a scripted prober: silence is not death, probes are
bounded, heartbeats are judged by their declared interval. No test sleeps."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from opscore.lifecycle import AgentRegistry, AgentStates, Liveness
from opscore.models import AgentCreate, StateReport, utcnow
from opscore.storage.memory import MemoryStorage

from .conftest import make_settings


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


class ScriptedProber:
    """Answers from a table (True: any HTTP answer); can hold probes to count them in flight."""

    def __init__(self) -> None:
        self.answers: dict[str, bool] = {}
        self.calls: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.gate: asyncio.Event | None = None

    async def reachable(self, url: str) -> bool:
        self.calls.append(url)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if self.gate is not None:
                await self.gate.wait()
            return self.answers.get(url, True)
        finally:
            self.in_flight -= 1

    async def close(self) -> None:
        return None


class World:
    def __init__(self, **settings: Any) -> None:
        defaults = {
            "agent_offline_after": 60,
            "probe_interval": 60,
            "probe_misses": 3,
            "probe_jitter": 0,
            "liveness_interval": 5,
            "probe_concurrency": 8,
        }
        self.settings = make_settings(**{**defaults, **settings})
        self.clock = Clock()
        self.store = MemoryStorage()
        self.registry = AgentRegistry(self.store, self.clock)
        self.states = AgentStates(self.store, self.settings, self.registry, self.clock)
        self.prober = ScriptedProber()
        self.liveness = Liveness(
            self.store,
            self.settings,
            self.states,
            self.prober,
            clock=self.clock,  # type: ignore[arg-type]
        )

    async def agent(self, agent_id: str, **fields: Any) -> str:
        endpoint = fields.pop("endpoint", f"http://127.0.0.1:9/{agent_id}")
        await self.registry.register_agent(
            AgentCreate(agent_id=agent_id, agent_name=agent_id, contact_endpoint=endpoint, **fields)
        )
        await self.states.report_state(
            agent_id, StateReport(agentId=agent_id, timestamp=self.clock(), state="idle")
        )
        return endpoint or ""

    async def at(self, seconds: float) -> None:
        """Advance the clock and run one sweep, with its probes to the end."""
        await self.liveness.sweep(self.clock.advance(seconds))
        await self.liveness.drain()

    async def state(self, agent_id: str) -> str | None:
        agent = await self.store.get_agent(agent_id)
        assert agent is not None
        return agent.state


async def test_a_silent_idle_agent_is_probed_and_stays_available_while_it_answers() -> None:
    world = World()
    url = await world.agent("quiet")
    await world.at(59)
    assert world.prober.calls == []  # not silent long enough to be asked
    await world.at(6)  # 65 s of silence (sweeps run every 5 s)
    assert world.prober.calls == [url] and await world.state("quiet") == "idle"
    await world.at(30)
    assert len(world.prober.calls) == 1  # the next probe is an interval later
    await world.at(31)
    assert len(world.prober.calls) == 2
    for _ in range(20):  # twenty minutes of answered probes: still idle, still available
        await world.at(61)
    assert await world.state("quiet") == "idle"


async def test_probes_without_an_answer_make_an_agent_offline_and_an_answer_brings_it_back() -> (
    None
):
    world = World()
    url = await world.agent("gone")
    world.prober.answers[url] = False
    await world.at(61)
    await world.at(61)
    assert await world.state("gone") == "idle"  # two misses: not yet
    await world.at(61)
    assert await world.state("gone") == "offline"
    history = await world.store.state_history("gone", offset=0, limit=1)
    assert "unreachable" in (history.items[0].reason or "")
    world.prober.answers[url] = True
    await world.at(61)  # offline agents keep being probed
    assert await world.state("gone") == "idle"
    history = await world.store.state_history("gone", offset=0, limit=1)
    assert history.items[0].reason == "answered a probe"


async def test_a_report_resets_the_silence_and_the_misses() -> None:
    world = World()
    url = await world.agent("flaky")
    world.prober.answers[url] = False
    await world.at(61)
    await world.at(61)
    await world.states.report_state(
        "flaky", StateReport(agentId="flaky", timestamp=world.clock(), state="idle")
    )
    world.prober.answers[url] = True
    await world.at(61)
    assert await world.state("flaky") == "idle"
    agent = await world.store.get_agent("flaky")
    assert agent is not None and agent.probe_failures == 0


async def test_an_agent_that_declared_a_heartbeat_is_judged_by_it_and_never_probed() -> None:
    world = World(heartbeat_misses=3)
    await world.agent("beating", heartbeat_interval_seconds=10)
    await world.at(25)
    assert await world.state("beating") == "idle"
    await world.states.heartbeat("beating")  # counts as seen
    await world.at(25)
    assert await world.state("beating") == "idle"
    await world.at(10)  # 35 s since the heartbeat: three intervals missed
    assert await world.state("beating") == "offline"
    assert world.prober.calls == []
    await world.states.heartbeat("beating")
    assert await world.state("beating") == "idle"


async def test_an_agent_with_no_endpoint_and_no_heartbeat_is_offline_after_the_window() -> None:
    world = World()
    await world.agent("unreachable-by-design", endpoint=None)
    await world.at(59)
    assert await world.state("unreachable-by-design") == "idle"
    await world.at(6)
    assert await world.state("unreachable-by-design") == "offline"
    assert world.prober.calls == []


async def test_probes_are_bounded_in_flight_and_each_agent_is_probed_once_at_a_time() -> None:
    world = World(probe_concurrency=8)
    for i in range(200):
        await world.agent(f"a{i}")
    world.prober.gate = asyncio.Event()
    await world.liveness.sweep(world.clock.advance(61))
    for _ in range(20):
        await asyncio.sleep(0)
    assert world.prober.peak == 8  # the semaphore: never more in flight
    started = len(world.liveness._probing)
    assert started == 200  # each waits for a slot (bounded at 256 per slot)
    await world.liveness.sweep(world.clock.advance(5))
    assert len(world.liveness._probing) == started  # no agent gets a second probe meanwhile
    world.prober.gate.set()
    await world.liveness.drain()
    for _ in range(10):
        await world.at(5)
    assert len(set(world.prober.calls)) == 200 and world.prober.peak == 8


async def test_jitter_spreads_the_probes_of_a_fleet_over_the_interval() -> None:
    world = World(probe_jitter=0.5)
    for i in range(100):
        await world.agent(f"a{i}")
    await world.at(61)
    assert len(world.prober.calls) == 100  # the first probe of each: when its silence ends
    await world.at(60)  # one interval later: only the agents whose jitter falls early
    second_round = len(world.prober.calls) - 100
    assert 10 < second_round < 90
    await world.at(31)  # past the widest spread: every agent has had its second probe
    assert len(world.prober.calls) == 200


async def test_held_reports_older_than_the_window_are_dropped_by_the_sweep() -> None:
    world = World(pending_report_ttl=300)
    await world.states.report_state(
        "late", StateReport(agentId="late", timestamp=world.clock(), state="idle")
    )
    dropped: list[int] = []
    world.liveness.on_dropped_reports = dropped.append
    await world.at(200)
    assert dropped == []
    await world.at(200)
    assert dropped == [1]
    assert await world.store.take_held_report("late") is None
