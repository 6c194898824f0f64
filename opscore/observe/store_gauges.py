"""The gauges that describe the store (queue depth, dead letters, the oldest ready task's wait,
replicas heard from, agents by state), read from it when ``/metrics`` is scraped.

They are a collector of their own, not prometheus-client ``Gauge`` objects, because they say
the same in every process that reads the store. With ``OPSCORE_PROCESSES`` above 1, the
processes' counters and histograms are added up from prometheus-client's multiprocess files,
where a gauge keeps every label a process ever set: an agent state that no agent is in any
more would have kept its last count. Read at the scrape, a state with no agents is simply
absent, as with one process.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass
class StoreReading:
    """What one scrape read from the store."""

    queue_depth: int = 0
    dead_letters: int = 0
    oldest_ready_seconds: float = 0.0
    replicas: int = 1
    agents_by_state: dict[str, int] = field(default_factory=dict)


class StoreGauges(Collector):
    """Yields the last ``StoreReading`` as gauges (``Telemetry.render`` replaces it at each
    scrape, before it collects)."""

    def __init__(self) -> None:
        self.reading = StoreReading()

    def collect(self) -> Iterator[Metric]:
        r = self.reading
        yield GaugeMetricFamily(
            "opscore_queue_depth", "Tasks waiting in the queue", value=r.queue_depth
        )
        yield GaugeMetricFamily(
            "opscore_dead_letters", "Tasks in the dead-letter list", value=r.dead_letters
        )
        yield GaugeMetricFamily(
            "opscore_queue_oldest_ready_seconds",
            "How long the longest-waiting ready task has waited for an agent (0 when none)",
            value=r.oldest_ready_seconds,
        )
        yield GaugeMetricFamily(
            "opscore_replicas",
            "Replicas sharing this store that this one heard from in the last 10 s (itself too)",
            value=r.replicas,
        )
        agents = GaugeMetricFamily("opscore_agents", "Registered agents by state", labels=["state"])
        for state, count in sorted(r.agents_by_state.items()):
            agents.add_metric([state], count)
        yield agents
