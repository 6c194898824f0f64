"""Workflows on the wire and in the store: templates, sessions, task runs, dead letters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, PrivateAttr, field_validator

from .a2a import A2ATaskRef
from .common import ID_PATTERN, ApiModel
from .decisions import Decision, StepKind, WaitPolicy
from .usage import UsageTotals

# template models refuse unknown keys (a misspelt field must not silently do nothing)
_STRICT = ConfigDict(extra="forbid")

# --- sessions -------------------------------------------------------------------------------


class SessionStatus(StrEnum):
    QUEUED = "queued"  # waiting for a run slot (the template's maxConcurrentRuns)
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SessionCreate(ApiModel):
    """An ad-hoc session (a span of an agent's work that is not a workflow run)."""

    agent_id: str | None = Field(None, pattern=ID_PATTERN)
    name: str | None = Field(None, max_length=200)
    metadata: dict[str, Any] = Field(default_factory=dict)


class SessionUpdate(ApiModel):
    status: SessionStatus | None = None
    metadata: dict[str, Any] | None = Field(None, description="Merged into the existing metadata.")
    error: str | None = Field(None, max_length=4000)


class Session(ApiModel):
    session_id: str
    kind: Literal["workflow", "adhoc"] = "workflow"
    name: str | None = None
    workflow_id: str | None = None
    workflow_version: str | None = None
    agent_id: str | None = Field(None, description="The agent a run is pinned to, if any.")
    status: SessionStatus = SessionStatus.RUNNING
    initial_payload: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    task_ids: dict[str, str] = Field(default_factory=dict, description="Template taskId -> run id.")
    error: str | None = None
    trace_id: str | None = None
    run_limit: int | None = Field(
        None, description="The template's maxConcurrentRuns when the run started, if any."
    )
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


# --- workflows ------------------------------------------------------------------------------


class RetryPolicy(ApiModel):
    model_config = _STRICT

    max_attempts: int | None = Field(None, ge=1, le=100, description="Default: server setting.")
    backoff_seconds: float | None = Field(None, ge=0, le=3600)
    backoff_multiplier: float = Field(2.0, ge=1, le=10)
    max_backoff_seconds: float | None = Field(None, ge=0, le=86400)
    jitter: float = Field(0.2, ge=0, le=1, description="Random +/- fraction of each delay.")


class TaskDefinition(ApiModel):
    model_config = _STRICT

    task_id: str = Field(pattern=ID_PATTERN, examples=["fetch"])
    name: str = Field("", max_length=200)
    agent_capability: str | None = Field(None, max_length=100, examples=["fetch"])
    agent_id: str | None = Field(None, pattern=ID_PATTERN, description="Always run on this agent.")
    target: Literal["auto", "agent", "workflow_agent", "capability"] = Field(
        "auto",
        description="auto: agentId if set, else the run's pinned agent, else any capable agent.",
    )
    parameters: dict[str, Any] = Field(default_factory=dict)
    next_task_id: str | None = Field(None, pattern=ID_PATTERN)
    depends_on: list[str] = Field(default_factory=list, max_length=100)
    priority: int = Field(0, ge=-1000, le=1000, description="Higher runs first.")
    timeout_seconds: float | None = Field(None, gt=0, le=86400)
    delay_seconds: float = Field(0, ge=0, le=86400, description="Wait this long once ready.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    fallback_task_id: str | None = Field(None, pattern=ID_PATTERN)
    kind: StepKind = Field(
        "agent",
        description=(
            "agent: an agent does the step; approval: an operator approves or rejects it; "
            "signal: it waits for a named signal (see wait)."
        ),
    )
    when: str | None = Field(
        None,
        min_length=1,
        max_length=1000,
        description=(
            "A CEL condition over input, tasks.<id>.result and tasks.<id>.status; false: the "
            "step ends skipped (docs/conditions.md)."
        ),
        examples=['tasks.check.result.score > 0.8 && input.mode == "full"'],
    )
    wait: WaitPolicy | None = Field(None, description="How an approval or signal step waits.")


class WorkflowDefinition(ApiModel):
    """A template; the prototype's format (id, name, description, version, tasks) loads as is.
    Unknown keys are refused."""

    model_config = _STRICT

    id: str = Field(pattern=ID_PATTERN, examples=["research-digest"])
    name: str = Field("", max_length=200)
    description: str = Field("", max_length=4000)
    version: str = Field("1.0", max_length=64)
    max_concurrent_runs: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description=(
            "At most this many runs of the workflow at once, across replicas; more wait "
            "(status queued) and start in order as earlier ones end."
        ),
    )
    tasks: list[TaskDefinition] = Field(min_length=1)
    # the task limit this definition last passed templates.validate_definition under: a
    # stored template comes back as one instance while its JSON is unchanged
    # (storage.parsed), so each of its runs need not check it again
    _checked_for: int | None = PrivateAttr(None)

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value

    def __eq__(self, other: object) -> bool:
        """Equal fields make equal definitions, whatever was worked out from either."""
        if not isinstance(other, WorkflowDefinition):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # as pydantic's models: mutable, unhashable

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy, without what was worked out from this one's fields (it may differ)."""
        copy = super().model_copy(update=update, deep=deep)
        for name in type(self).__private_attributes__:
            setattr(copy, name, None)
        return copy


class WorkflowTemplate(WorkflowDefinition):
    # a stored template is read back as it was written, by this or an older version
    model_config = ConfigDict(extra="ignore")

    created_at: datetime
    source: str = "api"

    _definition: WorkflowDefinition | None = PrivateAttr(None)

    def definition(self) -> WorkflowDefinition:
        """The definition alone, without what storing it added. Built once per instance:
        every run of a stored template asks for it, and the template comes back as the same
        instance while its JSON is unchanged (storage.parsed)."""
        if self._definition is None:
            self._definition = WorkflowDefinition.model_validate(
                self.model_dump(exclude={"created_at", "source"})
            )
        return self._definition


class WorkflowTrigger(ApiModel):
    """The prototype's trigger body: a template id or an inline definition, plus input."""

    workflow_definition_id: str | None = Field(None, pattern=ID_PATTERN)
    workflow_version: str | None = Field(None, max_length=64)
    workflow_definition: WorkflowDefinition | None = None
    initial_payload: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)


class RunCreate(ApiModel):
    initial_payload: dict[str, Any] = Field(default_factory=dict)
    version: str | None = Field(None, max_length=64)
    agent_id: str | None = Field(None, pattern=ID_PATTERN, description="Optionally pin the run.")
    metadata: dict[str, Any] = Field(default_factory=dict)


class RunAccepted(ApiModel):
    status: str = "accepted"
    message: str
    session_id: str
    workflow_id: str
    duplicate: bool = Field(False, description="True when an Idempotency-Key matched a past run.")


# --- tasks ----------------------------------------------------------------------------------


class TaskStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    WAITING = "waiting"  # an approval or signal step, until it is decided
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # its condition was false, or a prerequisite was skipped


class TaskAttempt(ApiModel):
    attempt: int
    agent_id: str | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None
    error: str | None = None


# A task carries its next step's parameters (its record holds them twice) up to this size
CARRIED_PARAMETERS_BYTES = 4096


class NextStep(ApiModel):
    """The step a task's completion alone lets start, carried on the task so that whichever
    replica writes the completion queues the step with it (workflow/next_steps.py).
    ``task_id`` comes last: with ``TaskRun.ends_run`` after it, a task's stored JSON ends
    with this id, which a Redis script reads there (storage/redis/queue_scripts.py)."""

    parameters: dict[str, Any] = Field(default_factory=dict)
    delay_seconds: float = 0
    task_id: str


class TaskRun(ApiModel):
    task_id: str = Field(description="Unique run id; agents dedupe on it (opscore_task_id).")
    session_id: str
    trace_id: str | None = Field(
        None, description="The run's trace, so any replica can add this task's spans to it."
    )
    step_id: str = Field(description="The taskId in the template.")
    workflow_id: str | None = Field(None, description="The run's template (for budgets).")
    name: str = ""
    status: TaskStatus = TaskStatus.PENDING
    agent_capability: str | None = None
    target_agent_id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    resolved_parameters: dict[str, Any] | None = None
    depends_on: list[str] = Field(default_factory=list)
    priority: int = 0
    timeout_seconds: float
    delay_seconds: float = 0
    max_attempts: int
    backoff_seconds: float
    backoff_multiplier: float = 2.0
    max_backoff_seconds: float
    jitter: float = 0.2
    fallback_task_id: str | None = None
    fallback_for: str | None = Field(None, description="Step this fallback stands in for.")
    kind: StepKind = "agent"
    when: str | None = None
    wait: WaitPolicy | None = None
    decision: Decision | None = Field(None, description="How an approval or signal step ended.")
    skip_reason: str | None = None
    attempts: int = 0
    uncharged_attempts: int = Field(
        0, description="Attempts not charged to the retry budget (agent lost, or re-driven)."
    )
    agent_id: str | None = None
    history: list[TaskAttempt] = Field(default_factory=list)
    result: Any = None
    error: str | None = None
    usage: UsageTotals | None = Field(None, description="What its agent reported spending.")
    created_at: datetime
    queued_at: datetime | None = None
    ready_at: datetime | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline: datetime | None = None
    cancel_reason: str | None = None
    deferred_report: dict[str, Any] | None = Field(
        None,
        description="An un-named idle/error report that arrived while the answer was awaited.",
    )
    pull: bool = Field(False, description="Handed to a pull worker, which claims it.")
    lease_until: datetime | None = Field(
        None, description="A pull worker holds the task until then unless it heartbeats."
    )
    cancel_acknowledged_at: datetime | None = Field(
        None, description="When the agent acknowledged the task's cancellation."
    )
    cancel_delivery: str | None = Field(
        None,
        description="What became of the cancel_task message: acknowledged, ignored, or why not.",
    )
    a2a: A2ATaskRef | None = Field(
        None,
        alias="a2a",
        description="A2A agents: the remote task this attempt became (docs/a2a.md).",
    )
    awaiting_answer: bool = Field(
        False,
        description=(
            "The hand-over's HTTP answer is still awaited; until it comes, un-named state "
            "reports do not end the attempt (the answer does)."
        ),
    )
    next_step: NextStep | None = Field(
        None, description="The plain step its completion alone lets start, queued with it."
    )
    ends_run: bool = Field(False, description="Its completion alone completes the run.")


class TaskResultReport(ApiModel):
    status: Literal["completed", "failed"] = Field(examples=["completed"])
    result: Any = None
    error: str | None = Field(None, max_length=4000)
    agent_id: str | None = Field(None, description="The reporting agent; checked if given.")
    usage: dict[str, Any] | None = Field(
        None, description="{inputTokens, outputTokens, costUsd, model}: added up, and budgets."
    )


class SessionDetail(Session):
    tasks: list[TaskRun] = Field(default_factory=list)
    duration_seconds: float | None = None


class DeadLetter(ApiModel):
    task_id: str
    session_id: str
    step_id: str
    error: str | None = None
    attempts: int
    dead_lettered_at: datetime


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """A task waiting in the queue; seq keeps FIFO order among equal priorities.

    A plain dataclass: the dispatcher handles thousands per second and never serialises them.
    A shared store may read the task's record in the same round trip as the claim (``read``):
    the dispatcher then needs no read of its own."""

    task_id: str
    priority: int
    ready_at: datetime
    seq: int
    task: TaskRun | None = field(default=None, compare=False)
    read: bool = field(default=False, compare=False)


class PurgeRequest(ApiModel):
    """What to remove now; both omitted: apply the configured retention at once."""

    older_than_seconds: float | None = Field(
        None,
        ge=0,
        le=315_360_000,
        description="Finished sessions that ended longer ago than this (at most 10 years).",
        examples=[86400],
    )
    keep: int | None = Field(
        None,
        ge=0,
        le=1_000_000_000,
        description="Keep only this many newest finished sessions.",
        examples=[1000],
    )


class PurgeResult(ApiModel):
    removed: int = Field(description="Finished sessions removed, with their tasks and letters.")
    finished_before: datetime | None = None
    kept_newest: int | None = None
