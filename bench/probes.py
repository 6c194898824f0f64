"""What liveness costs: N silent agents (AgentKit agents send no heartbeat) probed at the default
interval, in steady state, through the real sweep, store and prober. The agents' endpoints are
one aiohttp server in a child process (its CPU is not ours), answering 405 to the probe's GET as
AgentKit's example agent does. The peer, run in the same invocation: the same process with the
same fleet and liveness off, for the same wall time. Prints one JSON line.

    python -m bench.probes --agents 10000 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import timedelta

from opscore.config import Settings
from opscore.lifecycle import AgentRegistry, AgentStates, Liveness
from opscore.models import Agent, utcnow
from opscore.observe.logs import configure_logging
from opscore.storage.memory import MemoryStorage

from .common import free_port, wait_http

_TARGET = """
import sys
from aiohttp import web

async def refuse(request):
    return web.Response(status=405)

app = web.Application()
app.router.add_route("GET", "/{tail:.*}", refuse)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def _fleet(settings: Settings, agents: int, base_url: str) -> tuple[MemoryStorage, Liveness]:
    """Silent agents, each probed last at a random point of the past interval (steady state)."""
    store = MemoryStorage()
    registry = AgentRegistry(store)
    liveness = Liveness(store, settings, AgentStates(store, settings, registry))
    now = utcnow()
    for i in range(agents):
        period = liveness.probe_period(f"agent-{i}")
        await store.create_agent(
            Agent(
                agent_id=f"agent-{i}",
                agent_name="a",
                capabilities=["work"],
                contact_endpoint=f"{base_url}/agent-{i}/",
                state="idle",
                state_timestamp=now - timedelta(hours=1),
                last_seen=now - timedelta(hours=1),
                registered_at=now - timedelta(hours=1),
                updated_at=now,
                last_probe_at=now - timedelta(seconds=period * (i / agents)),
            )
        )
    return store, liveness


async def _measure(liveness: Liveness | None, seconds: float, tick: float) -> tuple[float, int]:
    """CPU seconds this process used while the dispatcher's loop ran its sweeps for ``seconds``."""
    probes = 0
    if liveness is not None:

        def count(_: bool) -> None:
            nonlocal probes
            probes += 1

        liveness.on_probe = count
    start_cpu, start = time.process_time(), time.monotonic()
    while time.monotonic() - start < seconds:
        if liveness is not None:
            await liveness.sweep(utcnow())
        await asyncio.sleep(tick)  # the dispatcher's tick (OPSCORE_DISPATCH_INTERVAL)
    if liveness is not None:
        await liveness.drain()
    return time.process_time() - start_cpu, probes


async def run(agents: int, seconds: float) -> dict[str, float]:
    settings = Settings(_env_file=None, api_key="bench-key-0123456789", log_level="WARNING")
    configure_logging(settings)
    port = free_port()
    target = subprocess.Popen([sys.executable, "-c", _TARGET, str(port)])
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/ready")
        _, liveness = await _fleet(settings, agents, base)  # seeded now: steady state from now
        cpu, probes = await _measure(liveness, seconds, settings.dispatch_interval)
        await liveness.close()
        peer_cpu, _ = await _measure(None, seconds, settings.dispatch_interval)
    finally:
        target.terminate()
        target.wait(10)
    return {
        "agents": agents,
        "seconds": seconds,
        "probe_interval": settings.probe_interval,
        "probes": probes,
        "probes_per_s": probes / seconds,
        "core_share": cpu / seconds,
        "peer_core_share": peer_cpu / seconds,
        "liveness_core_share": (cpu - peer_cpu) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.agents, args.seconds))))


if __name__ == "__main__":
    main()
