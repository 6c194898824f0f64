"""Dispatch throughput as the fleet and the queue grow, in-process: M one-task runs queued over
N idle agents whose transport acknowledges and completes each task at once, through the real
engine, store and dispatcher loop. Prints one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from opscore.config import Settings
from opscore.container import build_services
from opscore.dispatch.transports import HandoverAnswer
from opscore.models import Agent, StateRecord, TaskRun, WorkflowDefinition, utcnow
from opscore.observe.logs import configure_logging
from opscore.serve import tune_runtime
from opscore.workflow.outcomes import TaskOutcomes


class InstantTransport:
    """An agent that acknowledges every task and finishes it the moment it receives it."""

    name = "instant"

    def __init__(self) -> None:
        self.outcomes: TaskOutcomes | None = None
        self.pending: set[asyncio.Task[bool]] = set()

    def endpoint(self, agent: Agent) -> str | None:
        return None

    async def send(
        self, agent: Agent, task: TaskRun, headers: dict[str, str], *, timeout: float
    ) -> HandoverAnswer:
        assert self.outcomes is not None
        job = asyncio.ensure_future(self.outcomes.complete_task(task, None))
        self.pending.add(job)
        job.add_done_callback(self.pending.discard)
        return HandoverAnswer(outcome="accepted", status_code=202)

    async def close(self) -> None:
        return None


async def run(agents: int, tasks: int) -> dict[str, float]:
    settings = Settings(
        _env_file=None,
        api_key="bench-key-0123456789",
        log_level="WARNING",
        access_log=False,
        dispatch_interval=0.05,
    )
    transport = InstantTransport()
    services = build_services(settings, configure_logging(settings), transport=transport)
    transport.outcomes = services.workflow.outcomes
    tune_runtime()  # the GC and logging settings `opscore serve` runs with
    store, now = services.storage, utcnow()
    await store.open()  # OPSCORE_STORAGE_URL picks the store (memory:// by default)
    for i in range(agents):
        agent = Agent(
            agent_id=f"a{i}",
            agent_name="a",
            capabilities=["noop"],
            last_seen=now,
            registered_at=now,
            updated_at=now,
        )
        await store.create_agent(agent)
        await store.record_state(
            StateRecord(agent_id=f"a{i}", state="idle", timestamp=now, received_at=now),
            history_limit=10,
        )
    definition = WorkflowDefinition.model_validate(
        {"id": "one", "tasks": [{"taskId": "t", "agentCapability": "noop"}]}
    )
    for _ in range(tasks):  # all queued before the dispatcher starts
        await services.workflow.runs.start_run(definition, payload={})
    start = time.perf_counter()
    services.dispatcher.start()
    while (
        await store.list_sessions(
            status="completed", workflow_id=None, agent_id=None, offset=0, limit=1
        )
    ).total < tasks:
        await asyncio.sleep(0.001)  # the small case lasts ~0.1 s: a coarse poll would be its noise
    elapsed = time.perf_counter() - start
    await services.dispatcher.stop()
    await store.close()
    return {"agents": agents, "tasks": tasks, "seconds": elapsed, "tasks_per_s": tasks / elapsed}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.agents, args.tasks))))


if __name__ == "__main__":
    main()
