"""A completion that queues its run's next step in the same write (workflow/next_steps.py),
on every store, through the real app and real agents' reports: the run is read back only
where it must be (a join, a condition, the end of a run that has them), and what each step
gets is what it got when the run was read back after every step."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from opscore.storage import storage_from_url

from .agentkit_agent import AgentKitAgent
from .conftest import KEY, STORES, WEBHOOK_SECRET, make_settings, store_url
from .counted_store import counted
from .fakes import Behaviour, FakeFleet
from .servers import wait_for
from .workflow_helpers import create, run_counted, task, template


@pytest.fixture(params=STORES)
def counted_ops(request, fleet_factory, tmp_path):
    """Ops-Core on each store, with its store's calls counted, and a fleet of fake agents
    that answer 202 and report ``active`` and ``idle`` naming the task."""
    url = store_url(request, request.param, tmp_path)
    storage = storage_from_url(url)
    calls = counted(storage)
    server, fleet = fleet_factory(make_settings(storage_url=url), storage=storage)
    fleet.add("w", Behaviour(capabilities=["work"]))
    with _client(server.url) as client:
        yield client, fleet, calls


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10)


def test_a_chain_queues_each_step_with_the_completion_before_it(
    counted_ops: tuple[httpx.Client, FakeFleet, Counter[str]],
) -> None:
    client, fleet, calls = counted_ops
    create(
        client,
        template(
            "chain",
            task("a", parameters={"q": "${input.q}"}, nextTaskId="b"),
            task("b", parameters={"from": "${tasks.a.result.agent}"}, nextTaskId="c"),
            task("c", parameters={"b": "${tasks.b.status}", "n": 3}),
        ),
    )
    steps, spent = run_counted(client, calls, "chain", {"q": "x"})
    assert steps["a"]["resolvedParameters"] == {"q": "x"}
    assert steps["b"]["resolvedParameters"] == {"from": "w"}
    assert steps["c"]["resolvedParameters"] == {"b": "completed", "n": 3}
    assert [m["task_name"] for m in fleet.received] == ["a", "b", "c"]
    # never read back: the two steps before the last queued their next with them, and the
    # last step's completion completed the run with it (RunShapes.ended_by)
    assert spent["session_with_tasks"] == 0 and spent["update_session"] == 0
    assert steps["c"]["status"] == "completed"


def test_steps_that_need_the_run_still_read_it_back(
    counted_ops: tuple[httpx.Client, FakeFleet, Counter[str]],
) -> None:
    """A step that references a step other than the one it follows, a condition, and a
    join each need the run as it is now: those completions read it back, as before."""
    client, _, calls = counted_ops
    create(
        client,
        template(
            "needs-run",
            task("a", parameters={"q": "${input.q}"}),
            task("b", dependsOn=["a"], parameters={"q": "${input.q}"}),
            task("c", dependsOn=["b"], parameters={"first": "${tasks.a.result.echo.q}"}),
            task("d", dependsOn=["c"], when="input.q == 'x'"),
            task("e", dependsOn=["d"]),
        ),
    )
    steps, spent = run_counted(client, calls, "needs-run", {"q": "x"})
    assert steps["c"]["resolvedParameters"] == {"first": "x"}
    assert steps["d"]["status"] == "completed"
    # a -> b queued with it; b (c references a), c (d has a condition) and e (the end)
    # read the run back; d -> e queued with it
    assert spent["session_with_tasks"] == 3


@pytest.mark.parametrize("backend", STORES)
def test_agentkit_answers_queue_the_next_step_with_them(
    request, backend, tmp_path, server_factory
) -> None:
    """AgentKit's example agent answers each hand-over with its result (the completion is
    written on its own, not with a report): the next step goes in that same write."""
    url = store_url(request, backend, tmp_path)
    storage = storage_from_url(url)
    calls = counted(storage)
    server = server_factory(make_settings(storage_url=url), storage=storage)
    agent = AgentKitAgent(
        server.url, KEY, agent_id="kit", webhook_secret=WEBHOOK_SECRET, capabilities=["work"]
    ).start()
    try:
        with _client(server.url) as client:
            wait_for(
                lambda: client.get("/v1/opscore/agent/kit/state").status_code == 200, timeout=10
            )
            create(
                client,
                template(
                    "kit-chain",
                    task("a", parameters={"text": "${input.topic}"}, nextTaskId="b"),
                    task("b", parameters={"text": "${tasks.a.result}"}, nextTaskId="c"),
                    task("c", parameters={"text": "${tasks.b.result}"}),
                ),
            )
            steps, spent = run_counted(client, calls, "kit-chain", {"topic": "t"})
    finally:
        agent.kill()
    assert steps["c"]["result"] == "c(b(a(t)))"
    # a and b each queued the next with it; c, the end, completed the run with it
    assert spent["update_task_and_next"] == 3
    assert spent["session_with_tasks"] == 0 and spent["update_session"] == 0


def _chain_tasks(step_b_parameters: dict) -> list:
    from datetime import UTC, datetime

    from opscore.models import TaskRun

    now = datetime.now(UTC)
    common = {"session_id": "s1", "timeout_seconds": 5, "max_attempts": 1}
    common |= {"backoff_seconds": 1, "max_backoff_seconds": 1, "created_at": now}
    return [
        TaskRun(task_id="t-a", step_id="a", **common),
        TaskRun(
            task_id="t-b", step_id="b", depends_on=["a"], parameters=step_b_parameters, **common
        ),
    ]


def _session(payload: dict):
    from datetime import UTC, datetime

    from opscore.models import Session

    now = datetime.now(UTC)
    return Session(session_id="s1", initial_payload=payload, created_at=now, updated_at=now)


def test_the_runs_kept_are_bounded_in_runs_and_bytes() -> None:
    from opscore.workflow.next_steps import RunShapes

    shapes = RunShapes(max_runs=3, max_bytes=64 * 1000)
    big = {"blob": "x" * 2000}  # more than a 64th of the room
    shapes.seen(_session(big), _chain_tasks({"q": "${input.blob}"}))
    assert shapes.next_step_of("t-a") is None  # too large: nothing kept of it
    big_run = _session(big).model_copy(update={"session_id": "s-other"})
    shapes.seen(big_run, _chain_tasks({"q": "${tasks.a.result}"}))
    assert shapes.next_step_of("t-a") == "t-b"  # its input is not read ahead: not kept
    then = shapes.then(_chain_tasks({})[0], {"r": 1}, _session({}).created_at, parameter_limit=99)
    assert then is not None and then.changes["resolved_parameters"] == {"q": {"r": 1}}
    past_orjson = _session({"n": 2**70}).model_copy(update={"session_id": "s-big"})
    own_ids = [
        t.model_copy(update={"task_id": f"{t.task_id}-big"})
        for t in _chain_tasks({"q": "${input.n}"})
    ]
    shapes.seen(past_orjson, own_ids)
    assert shapes.next_step_of("t-a-big") is None  # too large to say: nothing kept of it
    assert shapes.next_step_of("t-a") == "t-b" and len(shapes) == 3  # remembered, no error
    for i in range(3):  # the least recently seen goes first
        session = _session({}).model_copy(update={"session_id": f"s{i + 2}"})
        tasks = [t.model_copy(update={"task_id": f"{t.task_id}{i}"}) for t in _chain_tasks({})]
        shapes.seen(session, tasks)
    assert len(shapes) == 3 and shapes.next_step_of("t-a") is None
    assert shapes.next_step_of("t-a2") == "t-b2"
    shapes.forget("s4")
    assert shapes.next_step_of("t-a2") is None and len(shapes) == 2
    shapes = RunShapes(max_runs=1000, max_bytes=6400)  # a run holds 25 bytes here
    for i in range(300):
        session = _session({}).model_copy(update={"session_id": f"b{i}"})
        params = {"q": "${tasks.a.result}"}
        tasks = [t.model_copy(update={"task_id": f"{t.task_id}-{i}"}) for t in _chain_tasks(params)]
        shapes.seen(session, tasks)
    assert 200 < len(shapes) < 300 and shapes.next_step_of("t-a-0") is None
    assert shapes.next_step_of("t-a-299") == "t-b-299"


def test_the_completion_that_completes_a_run_is_known_from_its_shape() -> None:
    """Only a run's one end, in a run with no condition and no fallback: every other step
    is then one it waited for."""
    from opscore.workflow.next_steps import RunShapes

    def shaped(session_id: str, *steps: tuple[str, list[str], dict]) -> list:
        base = _chain_tasks({})[0]
        return [
            base.model_copy(
                update={"task_id": f"{session_id}-{step}", "step_id": step, "depends_on": deps}
                | extra
            )
            for step, deps, extra in steps
        ]

    shapes = RunShapes()
    runs = {
        "chain": shaped("chain", ("a", [], {}), ("b", ["a"], {}), ("c", ["b"], {})),
        "one": shaped("one", ("a", [], {})),
        "join": shaped("join", ("a", [], {}), ("b", [], {}), ("c", ["a", "b"], {})),
        "two-ends": shaped("two-ends", ("a", [], {}), ("b", ["a"], {}), ("c", ["a"], {})),
        "condition": shaped("condition", ("a", [], {}), ("b", ["a"], {"when": "true"})),
        "fallback": shaped(
            "fallback", ("a", [], {"fallback_task_id": "f"}), ("f", [], {"fallback_for": "a"})
        ),
        "approval": shaped("approval", ("a", [], {}), ("b", ["a"], {"kind": "approval"})),
    }
    for session_id, tasks in runs.items():
        shapes.seen(_session({}).model_copy(update={"session_id": session_id}), tasks)
    ends = {t.task_id: shapes.ended_by(t.task_id) for tasks in runs.values() for t in tasks}
    assert {t: s for t, s in ends.items() if s} == {
        "chain-c": "chain",
        "one-a": "one",
        "join-c": "join",
    }
    shapes.forget("chain")  # a run this process no longer knows: read back, as before
    assert shapes.ended_by("chain-c") is None
