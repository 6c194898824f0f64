"""Unit tests: the queue, backoff, substitution and graph validation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from opscore.lifecycle import AgentRegistry, AgentStates
from opscore.models import TaskRun, WorkflowDefinition, utcnow
from opscore.storage.memory import MemoryStorage
from opscore.workflow import Workflow, build_workflow
from opscore.workflow.substitution import TemplateError, substitute
from opscore.workflow.templates import validate_definition

from .conftest import make_settings


async def test_queue_orders_by_priority_then_fifo_and_honours_delays() -> None:
    store = MemoryStorage()
    now = utcnow()
    await store.enqueue("low-1", priority=0, ready_at=now)
    await store.enqueue("high", priority=5, ready_at=now)
    await store.enqueue("low-2", priority=0, ready_at=now)
    await store.enqueue("later", priority=10, ready_at=now + timedelta(seconds=30))
    assert await store.queue_depth() == 4
    entries = await store.dequeue_ready(now, 10)
    assert [e.task_id for e in entries] == ["high", "low-1", "low-2"]
    assert await store.next_ready_at(now) == now + timedelta(seconds=30)
    await store.requeue(entries[1:])  # no agent for them: back, in the same order
    assert [e.task_id for e in await store.dequeue_ready(now, 1)] == ["low-1"]
    later = await store.dequeue_ready(now + timedelta(seconds=31), 10)
    assert [e.task_id for e in later] == ["later", "low-2"]
    assert await store.queue_depth() == 0


async def test_reenqueue_replaces_the_old_entry() -> None:
    store = MemoryStorage()
    now = utcnow()
    await store.enqueue("t", priority=0, ready_at=now)
    await store.enqueue("t", priority=0, ready_at=now + timedelta(seconds=5))
    assert await store.dequeue_ready(now, 10) == []
    assert [e.task_id for e in await store.dequeue_ready(now + timedelta(seconds=6), 10)] == ["t"]


def _workflow(rng: float) -> Workflow:
    settings = make_settings()
    store = MemoryStorage()
    registry = AgentRegistry(store)
    states = AgentStates(store, settings, registry)
    return build_workflow(store, settings, registry, states, rng=lambda: rng)


def _task(**fields) -> TaskRun:
    base = dict(
        task_id="t",
        session_id="s",
        step_id="t",
        timeout_seconds=1,
        max_attempts=5,
        backoff_seconds=1.0,
        backoff_multiplier=2.0,
        max_backoff_seconds=5.0,
        jitter=0.2,
        created_at=utcnow(),
    )
    return TaskRun(**{**base, **fields})


def test_backoff_is_exponential_capped_and_jittered() -> None:
    middle = _workflow(0.5).outcomes  # jitter factor exactly 1
    assert [middle.backoff(_task(), n) for n in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert _workflow(0.0).outcomes.backoff(_task(), 1) == pytest.approx(0.8)
    assert _workflow(1.0).outcomes.backoff(_task(), 1) == pytest.approx(1.2)


def test_substitution_keeps_types_renders_text_and_never_evaluates() -> None:
    context = {
        "input": {"n": 3, "tags": ["a", "b"]},
        "tasks": {"f": {"result": {"text": "hi"}}},
        "session": {"id": "s1", "agentId": None},
    }
    params = {
        "n": "${input.n}",
        "first": "${input.tags.0}",
        "msg": "say ${tasks.f.result.text} x${input.n}",
        "missing": "${input.nope}",
        "nested": [{"s": "${session.id}"}],
        "plain": "no refs",
    }
    assert substitute(params, context) == {
        "n": 3,
        "first": "a",
        "msg": "say hi x3",
        "missing": None,
        "nested": [{"s": "s1"}],
        "plain": "no refs",
    }


def _definition(*tasks: dict) -> WorkflowDefinition:
    return WorkflowDefinition.model_validate({"id": "w", "tasks": list(tasks)})


def test_validator_accepts_sequences_and_diamonds() -> None:
    validate_definition(
        _definition({"taskId": "a", "nextTaskId": "b"}, {"taskId": "b"}), max_tasks=10
    )
    validate_definition(
        _definition(
            {"taskId": "a"},
            {"taskId": "b", "dependsOn": ["a"]},
            {"taskId": "c", "dependsOn": ["a"]},
            {"taskId": "d", "dependsOn": ["b", "c"], "parameters": {"x": "${tasks.a.result}"}},
        ),
        max_tasks=10,
    )


def test_validator_rejects_a_fallback_shared_by_two_tasks() -> None:
    with pytest.raises(TemplateError, match="fallback"):
        validate_definition(
            _definition(
                {"taskId": "a", "fallbackTaskId": "f"},
                {"taskId": "b", "fallbackTaskId": "f"},
                {"taskId": "f"},
            ),
            max_tasks=10,
        )


async def test_memory_store_keeps_only_the_newest_finished_sessions() -> None:
    from opscore.models import Session, SessionStatus

    store = MemoryStorage(finished_session_limit=3)
    now = utcnow()
    for i in range(6):
        await store.save_session(Session(session_id=f"s{i}", created_at=now, updated_at=now))
        await store.save_tasks(
            [
                TaskRun(
                    task_id=f"t{i}",
                    session_id=f"s{i}",
                    step_id="a",
                    timeout_seconds=1,
                    max_attempts=1,
                    backoff_seconds=0,
                    max_backoff_seconds=0,
                    created_at=now,
                )
            ]
        )
    await store.save_session(Session(session_id="open", created_at=now, updated_at=now))
    for i in range(6):
        await store.update_session(f"s{i}", {"status": SessionStatus.COMPLETED}, expect=["running"])
    assert [s for s in ("s0", "s1", "s2") if await store.get_session(s)] == []
    assert all([await store.get_session(s) for s in ("s3", "s4", "s5", "open")])
    assert await store.get_task("t0") is None and await store.get_task("t5") is not None
    completed = await store.list_sessions(
        status="completed", workflow_id=None, agent_id=None, offset=0, limit=10
    )
    assert completed.total == 3 and [s.session_id for s in completed.items] == ["s5", "s4", "s3"]


async def test_a_failure_that_races_an_operator_cancel_cannot_be_redriven() -> None:
    """The operator cancels the run while its last attempt fails: the dead letter stays for
    the record, but re-driving it would restart work in a run the operator stopped."""
    from opscore.errors import ConflictError
    from opscore.models import SessionStatus, TaskStatus
    from opscore.workflow.transitions import move_session, move_task

    workflow = _workflow(0.0)
    store = workflow.engine.storage
    definition = WorkflowDefinition.model_validate(
        {
            "id": "w",
            "name": "w",
            "tasks": [{"taskId": "a", "name": "a", "retry": {"maxAttempts": 1}}],
        }
    )
    sid = (await workflow.runs.start_run(definition, payload={})).session_id
    [queued] = await store.session_tasks(sid)
    inflight = await move_task(
        store, queued.task_id, TaskStatus.DISPATCHED, agent_id="x", attempts=1
    )
    assert inflight is not None
    # the cancel's first step (the session) lands before the failure, its second after
    assert await move_session(store, sid, SessionStatus.CANCELLED) is not None
    await workflow.outcomes.fail_attempt(inflight, "boom", outcome="agent_error")
    assert (await store.list_dead_letters(offset=0, limit=10)).total == 1

    with pytest.raises(ConflictError) as refused:
        await workflow.dead_letters.redrive(inflight.task_id)
    assert refused.value.code == "SESSION_CLOSED"
    assert (await store.list_dead_letters(offset=0, limit=10)).total == 1
    assert (await store.get_session(sid)).status == SessionStatus.CANCELLED
    assert (await store.get_task(inflight.task_id)).status == TaskStatus.FAILED


async def _dispatched(workflow: Workflow, agent_id: str = "x") -> TaskRun:
    """One single-task run, its task handed over to ``agent_id`` (whose slot it holds)."""
    from opscore.models import Agent

    store = workflow.engine.storage
    now = utcnow()
    await store.create_agent(
        Agent(
            agent_id=agent_id, agent_name=agent_id, last_seen=now, registered_at=now, updated_at=now
        )
    )
    definition = WorkflowDefinition.model_validate(
        {"id": "w", "name": "w", "tasks": [{"taskId": "a", "name": "a"}]}
    )
    sid = (await workflow.runs.start_run(definition, payload={})).session_id
    [queued] = await store.session_tasks(sid)
    assert await store.claim_agent_slot(agent_id, queued.task_id)
    agent = await store.get_agent(agent_id)
    assert agent is not None
    dispatched = await workflow.handovers.mark_dispatched(queued, agent, utcnow())
    assert dispatched is not None and dispatched.awaiting_answer
    return dispatched


async def test_an_unnamed_idle_report_waits_for_the_hand_over_answer_which_decides() -> None:
    """AgentKit's example sends active/idle after its answer and without a task id: while the
    answer is awaited, such an idle must not complete the task with a null result."""
    from opscore.dispatch.transports import HandoverAnswer
    from opscore.models import StateRecord, TaskStatus

    workflow = _workflow(0.0)
    store = workflow.engine.storage
    task = await _dispatched(workflow)
    agent = await store.get_agent("x")
    assert agent is not None
    now = utcnow()
    for state in ("active", "idle"):
        record = StateRecord(agent_id="x", state=state, timestamp=now, received_at=now)
        await workflow.reports.on_agent_state(agent, record)
    current = await store.get_task(task.task_id)
    assert current is not None and current.status == TaskStatus.RUNNING
    await workflow.handovers.handover_answered(
        task, agent, HandoverAnswer("completed", 200, result="the answer")
    )
    done = await store.get_task(task.task_id)
    assert done is not None and done.status == TaskStatus.COMPLETED
    assert done.result == "the answer" and (await store.get_agent("x")).active_tasks == []


async def test_attempts_lost_to_liveness_are_bounded() -> None:
    from opscore.models import TaskStatus

    settings = make_settings(max_lost_attempts=2)
    store = MemoryStorage()
    registry = AgentRegistry(store)
    workflow = build_workflow(store, settings, registry, AgentStates(store, settings, registry))
    task = await _dispatched(workflow)
    for expected_uncharged in (1, 2):
        await workflow.outcomes.requeue_lost(task, "agent went offline")
        task = await store.get_task(task.task_id)
        assert task.status == TaskStatus.QUEUED and task.uncharged_attempts == expected_uncharged
        agent = await store.get_agent("x")
        assert await store.claim_agent_slot("x", task.task_id)
        task = await workflow.handovers.mark_dispatched(task, agent, utcnow())
    # the third loss is charged: the retry policy (3 attempts by default) now counts it
    await workflow.outcomes.requeue_lost(task, "agent went offline")
    task = await store.get_task(task.task_id)
    assert task.uncharged_attempts == 2 and task.history[-1].outcome == "agent_lost"
    assert task.attempts - task.uncharged_attempts == 1


async def test_an_unnamed_idle_that_beats_a_mere_acknowledgement_still_completes_the_task() -> None:
    """A background agent answers 202 and reports idle (no task id) so fast that the report is
    processed before the answer: the report is kept and decides once the answer says nothing."""
    from opscore.dispatch.transports import HandoverAnswer
    from opscore.models import StateRecord, TaskStatus

    workflow = _workflow(0.0)
    store = workflow.engine.storage
    task = await _dispatched(workflow)
    agent = await store.get_agent("x")
    assert agent is not None
    now = utcnow()
    record = StateRecord(
        agent_id="x", state="idle", timestamp=now, received_at=now, details={"result": 7}
    )
    await workflow.reports.on_agent_state(agent, record)
    assert (await store.get_task(task.task_id)).status == TaskStatus.DISPATCHED
    await workflow.handovers.handover_answered(task, agent, HandoverAnswer("accepted", 202))
    done = await store.get_task(task.task_id)
    assert done is not None and done.status == TaskStatus.COMPLETED and done.result == 7


async def test_an_agent_that_names_its_tasks_is_taken_at_its_word() -> None:
    """Once an agent's report named its task, a hand-over to it awaits no answer: its 202
    writes nothing, and its reports decide (an un-named idle included, once running)."""
    from opscore.dispatch.transports import HandoverAnswer
    from opscore.models import StateRecord, TaskStatus

    workflow = _workflow(0.0)
    store = workflow.engine.storage
    first = await _dispatched(workflow)
    now = utcnow()
    named = StateRecord(
        agent_id="x",
        state="active",
        timestamp=now,
        received_at=now,
        details={"opscore_task_id": first.task_id},
    )
    agent, _ = await store.record_state(named, history_limit=10)
    assert agent.names_tasks
    await workflow.outcomes.complete_task(first, "done")
    definition = WorkflowDefinition.model_validate(
        {"id": "w", "name": "w", "tasks": [{"taskId": "a", "name": "a"}]}
    )
    sid = (await workflow.runs.start_run(definition, payload={})).session_id
    [queued] = await store.session_tasks(sid)
    agent = await store.get_agent("x")
    task = await workflow.handovers.mark_dispatched(queued, agent, utcnow())
    assert task is not None and not task.awaiting_answer
    writes: list[str] = []
    update = store.update_task

    async def counted(task_id: str, *args, **kwargs):
        writes.append(task_id)
        return await update(task_id, *args, **kwargs)

    store.update_task = counted  # type: ignore[method-assign]
    await workflow.handovers.handover_answered(task, agent, HandoverAnswer("accepted", 202))
    assert writes == []
    for state, seconds in (("active", 1), ("idle", 2)):
        at = now + timedelta(seconds=seconds)
        record = StateRecord(
            agent_id="x", state=state, timestamp=at, received_at=at, details={"result": 7}
        )
        agent, _ = await store.record_state(record, history_limit=10)
        await workflow.reports.on_agent_state(agent, record)
    done = await store.get_task(task.task_id)
    assert done is not None and done.status == TaskStatus.COMPLETED and done.result == 7


async def test_a_new_run_queues_its_first_steps_without_reading_itself_back() -> None:
    """The run and its tasks were just written by this process and nobody has its id yet:
    the first advance decides on them as written (one store call less per run)."""
    from opscore.models import TaskStatus

    workflow = _workflow(0.0)
    store = workflow.engine.storage
    reads: list[str] = []
    read = store.session_with_tasks

    async def counted(session_id: str):
        reads.append(session_id)
        return await read(session_id)

    store.session_with_tasks = counted  # type: ignore[method-assign]
    definition = WorkflowDefinition.model_validate(
        {
            "id": "w",
            "name": "w",
            "tasks": [
                {"taskId": "a", "name": "a"},
                {"taskId": "b", "name": "b"},
                {"taskId": "c", "name": "c", "dependsOn": ["a", "b"]},
            ],
        }
    )
    sid = (await workflow.runs.start_run(definition, payload={})).session_id
    assert reads == []
    statuses = {t.step_id: t.status for t in await store.session_tasks(sid)}
    assert statuses == {"a": TaskStatus.QUEUED, "b": TaskStatus.QUEUED, "c": TaskStatus.PENDING}
    assert sorted(e.task_id for e in await store.dequeue_ready(utcnow(), 10)) == sorted(
        t.task_id for t in await store.session_tasks(sid) if t.step_id in ("a", "b")
    )


async def test_a_new_run_is_written_with_its_first_steps_queued_in_one_store_call() -> None:
    """The plain first steps (agent steps with no prerequisite or condition) go in the write
    that creates the run (``Storage.save_run(queued=...)``); a condition, an approval and the
    steps behind them are still started by ``advance``, as before."""
    from opscore.models import TaskStatus

    workflow = _workflow(0.0)
    store = workflow.engine.storage
    calls: list[str] = []
    for name in ("save_run", "save_tasks", "save_session", "update_task", "enqueue"):
        method = getattr(store, name)

        def counted(*args, _name=name, _method=method, **kwargs):
            calls.append(_name)
            return _method(*args, **kwargs)

        setattr(store, name, counted)
    definition = WorkflowDefinition.model_validate(
        {
            "id": "w",
            "name": "w",
            "tasks": [
                {"taskId": "a", "name": "a", "parameters": {"who": "${input.who}"}},
                {"taskId": "later", "name": "later", "delaySeconds": 30},
                {"taskId": "maybe", "name": "maybe", "when": "input.who == 'x'"},
                {"taskId": "ok", "name": "ok", "kind": "approval"},
                {"taskId": "c", "name": "c", "dependsOn": ["a", "later"]},
            ],
        }
    )
    before = utcnow()
    sid = (await workflow.runs.start_run(definition, payload={"who": "x"})).session_id
    # one write for the run and a, later; one move each for maybe (its condition) and ok
    assert calls == ["save_run", "update_task", "update_task"]
    tasks = {t.step_id: t for t in await store.session_tasks(sid)}
    assert tasks["a"].status == TaskStatus.QUEUED
    assert tasks["a"].resolved_parameters == {"who": "x"}
    assert tasks["later"].status == TaskStatus.QUEUED
    assert tasks["later"].ready_at >= before + timedelta(seconds=30)
    assert tasks["maybe"].status == TaskStatus.QUEUED
    assert tasks["ok"].status == TaskStatus.WAITING
    assert tasks["c"].status == TaskStatus.PENDING
    ready = {e.task_id for e in await store.dequeue_ready(utcnow(), 10)}
    assert ready == {tasks["a"].task_id, tasks["maybe"].task_id}
    assert await store.next_ready_at(utcnow()) == tasks["later"].ready_at
