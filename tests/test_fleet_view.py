"""The view of the fleet a store keeps between reads (``storage/fleet.py``): reads of what
changed applied to it give what a whole read would, and its agents with a free slot, by
capability, stay what looking at every agent would find."""

from __future__ import annotations

import random

from opscore.storage.fleet import AgentsById, AvailableAgents, FleetView

from .test_storage_contract import agent

STATES = {"idle", "unknown"}


def raw(agent_id: str, **fields) -> str:
    return agent(agent_id, **fields).model_dump_json()


def test_changes_move_agents_in_and_out_of_the_available_and_their_capabilities() -> None:
    view = FleetView()
    view.agents(
        [
            ("a", raw("a", state="idle", capabilities=["sum"])),
            ("b", raw("b", state="idle", capabilities=["sum", "draw"])),
            ("c", raw("c", state="active", capabilities=["draw"])),
        ]
    )
    available = view.available(STATES)
    assert [x.agent_id for x in available] == ["a", "b"]
    assert [x.agent_id for x in available.with_capability("draw")] == ["b"]
    view.changed(
        [
            ("a", raw("a", state="idle", capabilities=["draw"])),  # another capability
            ("b", raw("b", state="idle", capabilities=["sum", "draw"], active_tasks=["t1"])),
            ("c", raw("c", state="idle", capabilities=["draw"])),  # free now
            ("d", raw("d", state="idle", capabilities=["sum"])),  # new
        ]
    )
    available = view.available(STATES)
    assert [x.agent_id for x in available] == ["a", "c", "d"]  # b's one slot is taken
    assert [x.agent_id for x in available.with_capability("sum")] == ["d"]
    assert [x.agent_id for x in available.with_capability("draw")] == ["a", "c"]
    view.changed([("a", None), ("c", raw("c", state="idle", capabilities=["draw"]))])
    assert [x.agent_id for x in view.available(STATES).with_capability("draw")] == ["c"]
    assert {x.agent_id for x in view.all()} == {"b", "c", "d"}


def test_an_agent_that_changes_and_stays_available_keeps_its_place() -> None:
    view = FleetView()
    view.agents([(n, raw(n, state="idle", max_concurrency=2)) for n in "abc"])
    view.available(STATES)
    view.changed([("a", raw("a", state="idle", max_concurrency=2, active_tasks=["t1"]))])
    assert [x.agent_id for x in view.available(STATES)] == ["a", "b", "c"]


def test_the_index_answers_what_looking_at_every_agent_would() -> None:
    """Random changes, deletions and states: after each, the available agents and those of
    each capability are what a look at every agent of the view finds."""
    rng = random.Random(14)
    view = FleetView()
    view.agents([])
    capabilities = ["sum", "draw", "read"]
    for step in range(600):
        rows: list[tuple[str, str | None]] = []
        for _ in range(rng.randint(1, 5)):
            agent_id = f"a{rng.randint(0, 40)}"
            if rng.random() < 0.1:
                rows.append((agent_id, None))
                continue
            rows.append(
                (
                    agent_id,
                    raw(
                        agent_id,
                        state=rng.choice(["idle", "active", "unknown", "offline"]),
                        capabilities=rng.sample(capabilities, rng.randint(0, 2)),
                        max_concurrency=rng.randint(1, 2),
                        active_tasks=[f"t{step}"] * rng.randint(0, 1),
                    ),
                )
            )
        view.changed(rows)
        available = view.available(STATES)
        looked = AvailableAgents(
            x for x in view.all() if x.state in STATES and len(x.active_tasks) < x.max_concurrency
        )
        assert sorted(x.agent_id for x in available) == sorted(x.agent_id for x in looked)
        for capability in capabilities:
            indexed = sorted(x.agent_id for x in available.with_capability(capability))
            assert indexed == sorted(x.agent_id for x in looked.with_capability(capability))


def test_memorys_agents_keep_their_index_as_they_are_put_and_popped() -> None:
    """memory://'s agents by id (``AgentsById``): random writes and removals, and after each
    the available agents, by capability, as a look at every agent finds them."""
    rng = random.Random(7)
    agents = AgentsById()
    capabilities = ["sum", "draw"]
    for step in range(600):
        agent_id = f"a{rng.randint(0, 30)}"
        if rng.random() < 0.15:
            agents.pop(agent_id, None)
        else:
            agents[agent_id] = agent(
                agent_id,
                state=rng.choice(["idle", "active", "offline"]),
                capabilities=rng.sample(capabilities, rng.randint(0, 2)),
                active_tasks=[f"t{step}"] * rng.randint(0, 1),
            )
        if step % 3:
            continue  # the index is kept between reads too, not only built at one
        available = agents.available(STATES)
        looked = [
            x
            for x in agents.values()
            if x.state in STATES and len(x.active_tasks) < x.max_concurrency
        ]
        assert sorted(x.agent_id for x in available) == sorted(x.agent_id for x in looked)
        for capability in capabilities:
            assert sorted(x.agent_id for x in available.with_capability(capability)) == sorted(
                x.agent_id for x in looked if capability in x.capabilities
            )
