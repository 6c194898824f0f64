"""Memory of the in-memory store under state reports: N reports over M agents with the default
history bound, through the lifecycle state service (no HTTP: the store is what grows). Prints RSS at
half, at the end, and after a quarter more reports (the bound is reached, so it should not grow).
One JSON line."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
from datetime import timedelta

from opscore.config import Settings
from opscore.lifecycle import AgentRegistry, AgentStates
from opscore.models import AgentCreate, StateReport, utcnow
from opscore.observe.logs import configure_logging
from opscore.storage.memory import MemoryStorage

from .common import rss_mb


async def run(agents: int, reports: int) -> dict[str, float]:
    settings = Settings(_env_file=None, api_key="bench-key-0123456789", log_level="WARNING")
    configure_logging(settings)
    store = MemoryStorage()
    registry = AgentRegistry(store)
    states = AgentStates(store, settings, registry)
    for i in range(agents):
        await registry.register_agent(
            AgentCreate(agent_id=f"agent-{i}", agent_name="a", capabilities=["x"])
        )
    base = utcnow()
    start_rss = rss_mb()

    async def send(first: int, count: int) -> None:
        for n in range(first, first + count):
            agent = f"agent-{n % agents}"
            await states.report_state(
                agent,
                StateReport(
                    agentId=agent,
                    timestamp=base + timedelta(microseconds=n),
                    state="active" if n % 2 else "idle",
                    details={"n": n % 7},
                ),
            )

    await send(0, reports // 2)
    gc.collect()
    half = rss_mb()
    await send(reports // 2, reports - reports // 2)
    gc.collect()
    end = rss_mb()
    extra = reports // 4
    await send(reports, extra)
    gc.collect()
    after = rss_mb()
    return {
        "agents": agents,
        "reports": reports,
        "history_limit": settings.state_history_limit,
        "rss_mb_start": start_rss,
        "rss_mb_half": half,
        "rss_mb": end,
        "extra_reports": extra,
        "rss_mb_after_more": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=10000)
    parser.add_argument("--reports", type=int, default=1000000)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.agents, args.reports))))


if __name__ == "__main__":
    main()
