"""One workflow service, assembled: the engine and the parts that call into it."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..config import Settings
from ..dispatch.a2a import A2AClients, PushTokens
from ..dispatch.budgets import BudgetGate
from ..dispatch.pull import PullInbox
from ..errors import BadRequestError
from ..lifecycle.registry import AgentRegistry
from ..lifecycle.state import AgentStates
from ..models import RunAccepted, RunCreate, WorkflowDefinition, WorkflowTrigger, utcnow
from ..observe.metrics import Telemetry
from ..storage.base import Storage
from .a2a import A2ATasks
from .admissions import RunAdmissions
from .catalog import TemplateCatalog
from .dead_letters import DeadLetterService
from .decisions import DecisionService
from .engine import WorkflowEngine
from .handover import Handovers
from .outcomes import TaskOutcomes
from .recovery import recover
from .reports import AgentReports
from .retention import Retention
from .runs import RunService
from .schedules import ScheduleService
from .sessions import SessionService
from .usage import UsageLedger
from .workers import WorkerService


@dataclass
class Workflow:
    """The workflow room's services; routes call the one they need."""

    engine: WorkflowEngine
    templates: TemplateCatalog
    sessions: SessionService
    runs: RunService
    outcomes: TaskOutcomes
    handovers: Handovers
    reports: AgentReports
    dead_letters: DeadLetterService
    decisions: DecisionService
    schedules: ScheduleService
    admissions: RunAdmissions
    workers: WorkerService
    usage: UsageLedger
    retention: Retention
    a2a: A2ATasks

    async def run_template(
        self, workflow_id: str, request: RunCreate, *, idempotency_key: str | None = None
    ) -> RunAccepted:
        """Start a run of a stored template (its newest version unless the request names one):
        ``POST /workflows/{workflowId}/runs``, through FastAPI or the gateway's fast route.
        A pass this start woke takes its first turns before the caller answers
        (``Wakeup.let_the_woken_pass_go_first``), on either route."""
        template = await self.templates.get_template(workflow_id, request.version)
        return await self._start_for_caller(
            template.definition(),
            payload=request.initial_payload,
            agent_id=request.agent_id,
            metadata=request.metadata,
            idempotency_key=idempotency_key,
        )

    async def run_for_agent(
        self, agent_id: str, trigger: WorkflowTrigger, *, idempotency_key: str | None = None
    ) -> RunAccepted:
        """Start a run pinned to ``agent_id`` (``POST /agent/{agentId}/workflow``, the
        prototype's request): of a stored template (``workflowDefinitionId``) or of a
        definition given inline, exactly one of them. As ``run_template``, a pass this start
        woke takes its first turns before the caller answers."""
        if (trigger.workflow_definition is None) == (trigger.workflow_definition_id is None):
            raise BadRequestError(
                "Give exactly one of workflowDefinitionId and workflowDefinition",
                code="WORKFLOW_REQUIRED",
            )
        if trigger.workflow_definition is not None:
            definition = trigger.workflow_definition
            metadata = {**trigger.metadata, "inlineDefinition": True}
        else:
            template = await self.templates.get_template(
                trigger.workflow_definition_id or "", trigger.workflow_version
            )
            definition = template.definition()
            metadata = trigger.metadata
        return await self._start_for_caller(
            definition,
            payload=trigger.initial_payload,
            agent_id=agent_id,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )

    async def _start_for_caller(
        self,
        definition: WorkflowDefinition,
        *,
        payload: dict[str, Any],
        agent_id: str | None,
        metadata: dict[str, Any],
        idempotency_key: str | None,
    ) -> RunAccepted:
        """``RunService.start_run`` for a caller waiting on its answer: a pass the start woke
        takes its first turns before that answer (``Wakeup.let_the_woken_pass_go_first``)."""
        accepted = await self.runs.start_run(
            definition,
            payload=payload,
            agent_id=agent_id,
            metadata=metadata,
            idempotency_key=idempotency_key,
        )
        await self.engine.wakeup.let_the_woken_pass_go_first()
        return accepted

    async def recover(self) -> int:
        """Finish what a crash interrupted (see ``recovery.recover``)."""
        return await recover(self.engine)


def build_workflow(
    storage: Storage,
    settings: Settings,
    registry: AgentRegistry,
    states: AgentStates,
    *,
    telemetry: Telemetry | None = None,
    clock: Callable[[], datetime] = utcnow,
    rng: Callable[[], float] = random.random,
) -> Workflow:
    """Build the workflow services and subscribe them to agents' state changes."""
    engine = WorkflowEngine(storage, settings, clock=clock)
    engine.telemetry = telemetry
    outcomes = TaskOutcomes(engine, rng=rng)
    reports = AgentReports(outcomes)
    states.follower = reports
    registry.gone_listeners.append(reports.on_agent_gone)
    templates = TemplateCatalog(storage, settings, clock)
    runs = RunService(engine, registry)
    admissions = RunAdmissions(engine)
    ledger = UsageLedger(engine, BudgetGate(storage))
    engine.record_usage = ledger.record
    runs.admit = admissions.admit
    engine.run_end_listeners.append(admissions.run_ended)
    handovers = Handovers(outcomes)
    decisions = DecisionService(engine, outcomes)
    a2a = A2ATasks(
        outcomes,
        registry,
        A2AClients(timeout=settings.dispatch_timeout, public_url=settings.public_url),
        PushTokens(storage),
    )
    handovers.remote_answered = a2a.answered
    outcomes.timed_out_listeners.append(a2a.attempt_timed_out)
    decisions.resume = a2a.resume
    return Workflow(
        engine=engine,
        templates=templates,
        sessions=SessionService(engine, registry),
        runs=runs,
        outcomes=outcomes,
        handovers=handovers,
        reports=reports,
        dead_letters=DeadLetterService(engine, admissions),
        decisions=decisions,
        schedules=ScheduleService(engine, templates, runs),
        admissions=admissions,
        workers=WorkerService(outcomes, states, PullInbox()),
        usage=ledger,
        retention=Retention(engine),
        a2a=a2a,
    )
