"""Many concurrent clients never corrupt the store."""

from __future__ import annotations

import asyncio

import httpx

from opscore.models import Agent, StateRecord, utcnow
from opscore.storage.memory import MemoryStorage

from .conftest import KEY


def test_concurrent_state_reports_keep_exact_counts(server) -> None:
    agents = [f"agent-{i}" for i in range(20)]
    reports_per_agent = 25

    async def run() -> None:
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=30,
            limits=httpx.Limits(max_connections=50),
        ) as c:
            await asyncio.gather(
                *(c.post("/v1/opscore/agents", json={"agentId": a, "agentName": a}) for a in agents)
            )

            async def report(agent: str, i: int) -> int:
                r = await c.post(
                    f"/v1/opscore/agent/{agent}/state",
                    json={
                        "agentId": agent,
                        "timestamp": f"2026-11-24T10:00:00.{i:06d}+00:00",
                        "state": "idle" if i % 2 else "active",
                        "details": {"i": i},
                    },
                )
                return r.status_code

            codes = await asyncio.gather(
                *(report(a, i) for a in agents for i in range(reports_per_agent))
            )
            # Reports race each other, so some arrive after a newer one: 202 or 409, never else.
            assert set(codes) <= {202, 409}
            for agent in agents:
                history = (
                    await c.get(f"/v1/opscore/agent/{agent}/state/history", params={"limit": 500})
                ).json()
                accepted = [r["details"]["i"] for r in history["items"]]
                assert accepted == sorted(accepted, reverse=True), "history must stay ordered"
                current = (await c.get(f"/v1/opscore/agent/{agent}/state")).json()
                assert current["details"]["i"] == accepted[0]
            assert sum(1 for code in codes if code == 202) == sum(
                [
                    (
                        await c.get(f"/v1/opscore/agent/{a}/state/history", params={"limit": 500})
                    ).json()["total"]
                    for a in agents
                ]
            )

    asyncio.run(run())


async def test_memory_store_slot_claims_are_exact_under_contention() -> None:
    store = MemoryStorage()
    now = utcnow()
    await store.create_agent(
        Agent(
            agent_id="a",
            agent_name="a",
            max_concurrency=3,
            last_seen=now,
            registered_at=now,
            updated_at=now,
        )
    )
    await store.record_state(
        StateRecord(agent_id="a", state="idle", timestamp=now, received_at=now), history_limit=10
    )
    results = await asyncio.gather(*(store.claim_agent_slot("a", f"t{i}") for i in range(100)))
    assert sum(results) == 3
    assert len((await store.get_agent("a")).active_tasks) == 3
