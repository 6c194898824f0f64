"""A completion that queues its run's next step in the same write (workflow/next_steps.py),
on every store, through the real app and real agents' reports: the run is read back only
where it must be (a join, a condition, the end of a run that has them), and what each step
gets is what it got when the run was read back after every step."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

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


def _chain(workflow_id: str) -> dict:
    """a -> b -> c, where b reads a's result and c b's status: each the plain next step."""
    return template(
        workflow_id,
        task("a", parameters={"q": "${input.q}"}, nextTaskId="b"),
        task("b", parameters={"from": "${tasks.a.result.agent}"}, nextTaskId="c"),
        task("c", parameters={"b": "${tasks.b.status}", "n": 3}),
    )


def test_a_chain_queues_each_step_with_the_completion_before_it(
    counted_ops: tuple[httpx.Client, FakeFleet, Counter[str]],
) -> None:
    client, fleet, calls = counted_ops
    create(client, _chain("chain"))
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


def test_a_run_s_tasks_carry_what_their_completion_alone_does() -> None:
    """``carried_shapes``: the plain next step rides on the step before it when it reads
    nothing of the run but that step's result and is small; the run's one end says so."""
    from opscore.models.runs import CARRIED_PARAMETERS_BYTES
    from opscore.workflow.next_steps import carried_shapes

    def chain(b_parameters: dict, **b_extra: object) -> list:
        a, b = _chain_tasks(b_parameters)
        c = b.model_copy(
            update={"task_id": "t-c", "step_id": "c", "depends_on": ["b"], "parameters": {}}
        )
        return [a, b.model_copy(update=b_extra), c]

    a, b, c = carried_shapes(chain({"from": "${tasks.a.result.x}", "n": 1}))
    assert a.next_step is not None and a.next_step.task_id == "t-b"
    assert a.next_step.parameters == {"from": "${tasks.a.result.x}", "n": 1}
    assert b.next_step is not None and b.next_step.task_id == "t-c"
    assert (a.ends_run, b.ends_run, c.ends_run) == (False, False, True)
    assert c.next_step is None
    # b reads the input, or its session, or is large: it does not ride on a (a run
    # this process has seen still queues it with a's completion: RunShapes.seen)
    for parameters in (
        {"q": "${input.q}"},
        {"s": "${session.id}"},
        {"blob": "x" * CARRIED_PARAMETERS_BYTES},
    ):
        a, b, _ = carried_shapes(chain(parameters))
        assert a.next_step is None and b.next_step is not None
    a, b, c = carried_shapes(chain({}, when="true"))  # a condition: the run decides
    assert a.next_step is None and not c.ends_run
    # a delay rides along
    a, _, _ = carried_shapes(chain({}, delay_seconds=2.5))
    assert a.next_step is not None and a.next_step.delay_seconds == 2.5


def test_a_completion_queues_the_step_its_task_carries_as_a_seen_run_would() -> None:
    """The same queued step from what the task carries as from the run seen; a task handed
    over here names its next step and its run's end before its record is read, and those
    names are bounded and forgotten at completion."""
    from datetime import UTC, datetime

    from opscore.workflow.next_steps import RunShapes, carried_shapes

    now = datetime(2026, 12, 6, tzinfo=UTC)
    a, b = _chain_tasks({"from": "${tasks.a.result.x}"})
    a, b = carried_shapes([a, b.model_copy(update={"delay_seconds": 3})])
    seen = RunShapes()
    seen.seen(_session({}), [a, b])
    from_seen = seen.then(a, {"x": 7}, now, parameter_limit=1000)
    unseen = RunShapes()
    from_carried = unseen.then(a, {"x": 7}, now, parameter_limit=1000)
    assert from_carried is not None and from_carried == from_seen
    assert from_carried.changes["resolved_parameters"] == {"from": 7}
    assert from_carried.ready_at == now + timedelta(seconds=3)
    # past the parameter limit: not queued with it (advance refuses it, as any step)
    assert unseen.then(a, {"x": "y" * 2000}, now, parameter_limit=100) is None

    assert unseen.next_step_of("t-a") is None and unseen.ended_by("t-b") is None
    unseen.handed_over(a)
    unseen.handed_over(b)
    assert unseen.next_step_of("t-a") == "t-b" and unseen.ended_by("t-a") is None
    assert unseen.ended_by("t-b") == "s1" and unseen.ends(b) == "s1"
    unseen.done("t-a")
    assert unseen.next_step_of("t-a") is None
    bounded = RunShapes(max_handed=2)
    for i in range(3):
        bounded.handed_over(a.model_copy(update={"task_id": f"t-a{i}"}))
    assert bounded.next_step_of("t-a0") is None and bounded.next_step_of("t-a2") == "t-b"


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["redis", "postgresql"])
def test_a_replica_that_never_saw_a_run_queues_its_steps_with_their_completions(
    backend, request, tmp_path, server_factory, fleet_factory
) -> None:
    """Replica T dispatches nothing; replica R hands every task over. Agent w reports to
    R, agent v to T. Runs started on T, their tasks completed on R: R writes the next step,
    or the run's end, with the completion, and never reads the run back when its next step
    reads only the step before it; where a step reads the input, R reads the run back at
    that step, as before. A run started on R whose middle step v completes on T, which
    neither started the run nor handed the step over: T queues the next step on its own,
    without reading the run back either. Each step gets what it got before."""
    url = store_url(request, backend, tmp_path)
    on_trigger = storage_from_url(url)
    trigger_calls = counted(on_trigger)
    trigger = server_factory(
        make_settings(storage_url=url, access_log=False, dispatcher_enabled=False),
        storage=on_trigger,
    )
    storage = storage_from_url(url)
    calls = counted(storage)
    replica, fleet = fleet_factory(
        make_settings(storage_url=url, access_log=False), storage=storage
    )
    fleet.add("w", Behaviour(capabilities=["work"]))
    reporting_to_t = FakeFleet(trigger.url, KEY).start()
    try:
        reporting_to_t.add("v", Behaviour(capabilities=["far"]))
        with _client(trigger.url) as on_t, _client(replica.url) as on_r:
            for agent in ("w", "v"):
                wait_for(
                    lambda a=agent: on_r.get(f"/v1/opscore/agents/{a}").status_code == 200,
                    timeout=10,
                )
            create(on_t, _chain("carried"))
            create(
                on_t,
                template(
                    "crossed",
                    task("a", nextTaskId="b"),
                    task("b", agentCapability="far", nextTaskId="c"),
                    task("c", parameters={"from": "${tasks.b.result.agent}"}),
                ),
            )
            create(
                on_t,
                template(
                    "reads-input",
                    task("a", nextTaskId="b"),
                    task("b", parameters={"q": "${input.q}"}, nextTaskId="c"),
                    task("c"),
                ),
            )
            for _ in range(2):
                steps, _ = run_counted(on_t, calls, "carried", {"q": "x"})
                assert steps["b"]["resolvedParameters"] == {"from": "w"}
                assert steps["c"]["resolvedParameters"] == {"b": "completed", "n": 3}
                assert {s["agentId"] for s in steps.values()} == {"w"}
            assert calls["session_with_tasks"] == 0 and calls["update_session"] == 0
            steps, _ = run_counted(on_r, calls, "crossed", {})  # R has seen it, T has not
            assert [steps[s]["agentId"] for s in "abc"] == ["w", "v", "w"]
            assert steps["c"]["resolvedParameters"] == {"from": "v"}
            # b's completion, written by T: c queued on its own, the run not read back
            assert calls["session_with_tasks"] == 0 and calls["update_session"] == 0
            assert trigger_calls["session_with_tasks"] == 0
            steps, spent = run_counted(on_t, calls, "reads-input", {"q": "y"})
            assert steps["b"]["resolvedParameters"] == {"q": "y"}
            # a's completion read the run back to queue b; then R knows the run: c with b's
            assert spent["session_with_tasks"] == 1
    finally:
        reporting_to_t.stop()
