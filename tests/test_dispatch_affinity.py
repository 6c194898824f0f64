"""Tasks go first to the agents that report to this replica (``dispatch/affinity.py``): the
order among free agents, the slots left to the replica that just freed them, and two real
replicas on Redis and on PostgreSQL, each with agents reporting to it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from opscore.api import create_app
from opscore.dispatch.affinity import LEFT_FOR, ReportedHere
from opscore.models import Agent

from .conftest import KEY, make_settings, store_url
from .fakes import Behaviour, FakeFleet
from .servers import ServerThread, wait_for
from .test_fleet import _replicas
from .workflow_helpers import create, run, settle, task, template

H = {"Authorization": f"Bearer {KEY}"}
T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


def _agent(agent_id: str, reported: datetime | None = T0, seen: datetime = T0) -> Agent:
    return Agent(
        agent_id=agent_id,
        agent_name=agent_id,
        capabilities=["work"],
        state="idle" if reported else None,
        state_timestamp=reported,
        last_seen=seen,
        registered_at=T0,
        updated_at=seen,
    )


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def _two_up() -> ReportedHere:
    return ReportedHere(replicas=lambda: 2)


def test_agents_reporting_elsewhere_go_last_each_part_in_its_order() -> None:
    here = _two_up()
    mine, theirs, never, also_mine, also_theirs = (
        _agent("mine"),
        _agent("theirs"),
        _agent("never", reported=None),
        _agent("also-mine"),
        _agent("also-theirs"),
    )
    here.wrote(mine)
    here.wrote(also_mine)
    order = here.ordered([theirs, mine, also_theirs, never, also_mine])
    assert [a.agent_id for a in order] == ["mine", "never", "also-mine", "theirs", "also-theirs"]


def test_a_newer_report_written_elsewhere_makes_the_agent_theirs() -> None:
    here = _two_up()
    here.wrote(_agent("a"))
    assert not here.elsewhere(_agent("a"))
    # the record read later says another replica wrote a newer report
    assert here.elsewhere(_agent("a", reported=T0 + timedelta(seconds=1)))
    # and back: this replica writes the next one
    here.wrote(_agent("a", reported=T0 + timedelta(seconds=2)))
    assert not here.elsewhere(_agent("a", reported=T0 + timedelta(seconds=2)))


def test_with_one_replica_up_the_order_is_the_round_robin() -> None:
    alone = ReportedHere(replicas=lambda: 1)
    agents = [_agent("b"), _agent("a"), _agent("c")]
    alone.wrote(agents[1])
    assert list(alone.ordered(agents)) == agents
    # a replica that has written no report yet (just restarted) changes nothing either
    fresh = _two_up()
    assert list(fresh.ordered(agents)) == agents


def test_a_slot_just_freed_by_another_replica_is_left_to_it_for_a_moment() -> None:
    here = _two_up()
    freed = _agent("theirs", seen=T0)
    assert here.left_to_another(freed, T0 + LEFT_FOR / 2)
    assert not here.left_to_another(freed, T0 + LEFT_FOR)  # that replica did not take it
    # a report time ahead of this clock (skew between replicas) leaves nothing
    assert not here.left_to_another(freed, T0 - timedelta(seconds=5))
    # an agent whose report this replica wrote is taken at once
    here.wrote(freed)
    assert not here.left_to_another(freed, T0 + LEFT_FOR / 2)
    # and nothing is left to anyone while this replica is the only one up
    assert not ReportedHere(replicas=lambda: 1).left_to_another(_agent("x"), T0 + LEFT_FOR / 2)


def test_the_agents_remembered_are_bounded_least_recent_first() -> None:
    here = ReportedHere(replicas=lambda: 2, kept=2)
    a, b, c = _agent("a"), _agent("b"), _agent("c")
    here.wrote(a)
    here.wrote(b)
    here.wrote(a)  # a reported again: b is now the least recent
    here.wrote(c)
    assert not here.elsewhere(a) and not here.elsewhere(c)
    assert here.elsewhere(b)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_a_replica_hands_tasks_to_the_agents_that_report_to_it(backend, request, tmp_path) -> None:
    """Replica R receives near's reports, F far's. R dispatches (F's dispatcher is off, so no
    race decides): each run goes to near while near is free, not to both in turn; with near
    busy, far takes the next, at once when F wrote far's report long ago, after ``LEFT_FOR``
    when F just wrote it."""
    url = store_url(request, backend, tmp_path)
    far_replica = ServerThread(
        create_app(make_settings(storage_url=url, access_log=False, dispatcher_enabled=False))
    ).start()
    replica = ServerThread(create_app(make_settings(storage_url=url, access_log=False))).start()
    near_fleet = FakeFleet(replica.url, KEY).start()
    far_fleet = FakeFleet(far_replica.url, KEY).start()
    try:
        with (
            httpx.Client(base_url=replica.url, headers=H, timeout=10) as on_r,
            httpx.Client(base_url=far_replica.url, headers=H, timeout=10) as on_f,
        ):
            wait_for(lambda: _replicas(on_r) == 2 and _replicas(on_f) == 2, timeout=30)
            far_fleet.add("far")
            near_fleet.add("near")
            create(on_r, template("solo", task("only")))
            # far's idle report is older than LEFT_FOR: only the order keeps far waiting
            time.sleep(LEFT_FOR.total_seconds() * 1.2)
            for _ in range(6):
                assert settle(on_r, run(on_r, "solo"))["status"] == "completed"
            assert near_fleet.per_agent["near"] == 6
            assert far_fleet.per_agent["far"] == 0

            near_fleet.behaviours["near"] = Behaviour(kind="hang")
            held = run(on_r, "solo")
            wait_for(lambda: near_fleet.per_agent["near"] == 7, timeout=20)
            # near holds its only slot: far's is free (its report is old), and is taken
            assert settle(on_r, run(on_r, "solo"))["status"] == "completed"
            assert far_fleet.per_agent["far"] == 1

            # far's report of that run (idle) was just written by F: R leaves far's slot to
            # F for LEFT_FOR, then, F not dispatching, takes it
            seen = _at(on_r.get("/v1/opscore/agents/far").json()["lastSeen"])
            detail = settle(on_r, run(on_r, "solo"))
            assert detail["status"] == "completed" and far_fleet.per_agent["far"] == 2
            dispatched = _at(detail["tasks"][0]["dispatchedAt"])
            assert dispatched - seen >= LEFT_FOR
            on_r.post(f"/v1/opscore/sessions/{held}/cancel")
    finally:
        near_fleet.stop()
        far_fleet.stop()
        replica.stop()
        far_replica.stop()
