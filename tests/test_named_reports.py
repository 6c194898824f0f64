"""Agents whose reports name their task (``details.opscore_task_id``) are taken at their word,
on every store, through the real app and real agents: once a report of theirs named its task,
nothing waits for a hand-over's answer, so an acknowledgement (202) costs no write. Agents
that never name their task (AgentKit's example) keep the answer deciding, and each 202 of
theirs is still written: it is what lets their un-named ``idle`` end the attempt."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from opscore.storage import storage_from_url

from .conftest import KEY, STORES, make_settings, store_url
from .counted_store import counted
from .fakes import Behaviour, FakeFleet
from .workflow_helpers import create, run_counted, task, template


@pytest.fixture(params=STORES)
def fleet_on_store(request, fleet_factory, tmp_path):
    """Ops-Core on each store, its store's calls counted; agent ``named`` names its task in
    its reports, agent ``quiet`` does not. Both answer 202 and report ``active``, ``idle``."""
    url = store_url(request, request.param, tmp_path)
    storage = storage_from_url(url)
    calls = counted(storage)
    server, fleet = fleet_factory(make_settings(storage_url=url), storage=storage)
    fleet.add("named", Behaviour(capabilities=["named"]))
    fleet.add("quiet", Behaviour(capabilities=["quiet"], with_task_id=False))
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
        for capability in ("named", "quiet"):
            steps = [
                task(s, agentCapability=capability, **({"nextTaskId": n} if n else {}))
                for s, n in (("a", "b"), ("b", "c"), ("c", None))
            ]
            create(client, template(f"chain-{capability}", *steps))
        yield client, fleet, calls


def _chain(client: httpx.Client, calls: Counter[str], capability: str) -> Counter[str]:
    """Run the three-step chain on ``capability``'s agent; the store calls it made."""
    steps, spent = run_counted(client, calls, f"chain-{capability}", {})
    assert all(t["attempts"] == 1 for t in steps.values())
    return spent


def _names_tasks(client: httpx.Client, agent_id: str) -> bool:
    response = client.get(f"/v1/opscore/agents/{agent_id}")
    assert response.status_code == 200, response.text
    return response.json()["namesTasks"]


def test_a_202_from_an_agent_that_names_its_tasks_is_not_written(
    fleet_on_store: tuple[httpx.Client, FakeFleet, Counter[str]],
) -> None:
    client, _, calls = fleet_on_store
    assert not _names_tasks(client, "named")  # not known before it reported a task
    first = _chain(client, calls, "named")
    assert _names_tasks(client, "named")
    later = _chain(client, calls, "named")
    # the first step's 202 came before the agent's first named report: written; the rest
    # (two in the first run, three in the second) were not
    assert first["update_task"] - later["update_task"] == 1, (first, later)
    assert later["update_task"] == 3  # the hand-overs alone


def test_a_202_from_an_agent_that_never_names_its_tasks_is_written(
    fleet_on_store: tuple[httpx.Client, FakeFleet, Counter[str]],
) -> None:
    client, fleet, calls = fleet_on_store
    first = _chain(client, calls, "quiet")
    later = _chain(client, calls, "quiet")
    assert not _names_tasks(client, "quiet")
    # each hand-over, and each 202 (it lets the un-named idle end the attempt)
    assert first["update_task"] >= 6 and later["update_task"] >= 6, (first, later)
    assert [m["task_name"] for m in fleet.received] == ["a", "b", "c"] * 2
