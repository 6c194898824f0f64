"""Many concurrent runs over a small fleet: everything finishes, nothing is sent twice."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from .conftest import KEY
from .fakes import Behaviour
from .servers import wait_for
from .workflow_helpers import create, task, template

RUNS = 200


def test_200_concurrent_runs_over_5_agents_all_complete_without_double_dispatch(
    fleet_factory,
) -> None:
    server, fleet = fleet_factory()
    for i in range(5):
        fleet.add(f"agent-{i}", Behaviour(with_task_id=i % 2 == 0))
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    ) as client:
        create(
            client,
            template("chain", task("a", nextTaskId="b"), task("b", nextTaskId="c"), task("c")),
        )

        async def trigger_all() -> list[str]:
            async with httpx.AsyncClient(
                base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
            ) as c:
                responses = await asyncio.gather(
                    *(
                        c.post(
                            "/v1/opscore/workflows/chain/runs", json={"initialPayload": {"i": i}}
                        )
                        for i in range(RUNS)
                    )
                )
            assert {r.status_code for r in responses} == {202}
            return [r.json()["sessionId"] for r in responses]

        session_ids = asyncio.run(trigger_all())

        def all_done() -> bool:
            page = client.get(
                "/v1/opscore/sessions", params={"status": "completed", "limit": 1}
            ).json()
            return page["total"] == RUNS

        wait_for(all_done, timeout=120, interval=0.25)
        statuses = Counter(
            client.get(f"/v1/opscore/sessions/{sid}").json()["status"] for sid in session_ids
        )
        assert statuses == Counter({"completed": RUNS})

    sent = fleet.task_ids()
    assert len(sent) == RUNS * 3, "every task dispatched"
    assert max(sent.values()) == 1, "no task dispatched twice to a healthy fleet"
    assert sum(fleet.per_agent.values()) == RUNS * 3
    assert len(fleet.per_agent) == 5, "work spread over every agent"
