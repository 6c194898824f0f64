"""Pydantic models shared by the API, the services, the storage backends and the SDK.

Wire names are camelCase (as AgentKit and the prototype use them); Python names are snake_case.
Records (``Agent``, ``TaskRun``...) are treated as immutable values: services make changed copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from pydantic.alias_generators import to_camel

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
Capability = Annotated[str, StringConstraints(min_length=1, max_length=100)]
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are taken to be UTC; aware ones are converted to it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Page(ApiModel, Generic[T]):
    """One page of a list: the items plus what is needed to fetch the next."""

    items: list[T]
    total: int
    offset: int
    limit: int


class StatusMessage(ApiModel):
    status: str = "success"
    message: str


# --- agents ---------------------------------------------------------------------------------


class AgentBase(ApiModel):
    agent_name: str = Field(min_length=1, max_length=200, examples=["summarizer"])
    version: str = Field("0.0.0", max_length=64, examples=["0.1.0"])
    capabilities: list[Capability] = Field(
        default_factory=list, max_length=100, examples=[["summarize"]]
    )
    contact_endpoint: str | None = Field(
        None, max_length=2048, pattern=r"^https?://", examples=["http://127.0.0.1:8101/"]
    )
    metadata: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: int = Field(1, ge=1, le=1000, description="Ops-Core tasks run at once.")

    @field_validator("capabilities")
    @classmethod
    def _check_capabilities(cls, value: list[str]) -> list[str]:
        for cap in value:
            if not cap or len(cap) > 100:
                raise ValueError("each capability must be 1-100 characters")
        return list(dict.fromkeys(value))

    @field_validator("contact_endpoint")
    @classmethod
    def _check_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("contactEndpoint must be an http:// or https:// URL")
        return value


class AgentCreate(AgentBase):
    """A registration by an operator or the SDK; agentId is generated when omitted."""

    agent_id: str | None = Field(None, pattern=ID_PATTERN, examples=["summarizer-1"])


class Agent(AgentBase):
    agent_id: str
    state: str | None = Field(None, description="Last reported state; null until the first report.")
    state_timestamp: datetime | None = None
    state_details: dict[str, Any] = Field(default_factory=dict)
    last_seen: datetime
    registered_at: datetime
    updated_at: datetime
    source: Literal["api", "webhook"] = "api"
    active_tasks: list[str] = Field(default_factory=list, description="Ops-Core tasks in flight.")


# --- state ----------------------------------------------------------------------------------


class StateReport(BaseModel):
    """Exactly what AgentKit's SDK sends (``report_state_to_opscore``)."""

    agentId: str = Field(max_length=128, examples=["3f2b9c1e-7a44-4d0e-9a51-2f6f0c8d1e77"])
    timestamp: datetime = Field(examples=["2026-11-24T10:15:30.123456+00:00"])
    state: str = Field(min_length=1, max_length=64, examples=["active"])
    details: dict[str, Any] = Field(default_factory=dict)

    @field_validator("details", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


class StateRecord(ApiModel):
    agent_id: str
    state: str
    timestamp: datetime
    details: dict[str, Any] = Field(default_factory=dict)
    received_at: datetime
    reason: str | None = Field(None, description="Set when Ops-Core itself changed the state.")


class StateAccepted(ApiModel):
    status: str = "success"
    message: str
    agent_id: str
    state: str
    timestamp: datetime
    duplicate: bool = False


# --- webhook --------------------------------------------------------------------------------


class WebhookAgentDetails(BaseModel):
    agentId: str = Field(pattern=ID_PATTERN)
    agentName: str = Field("", max_length=200)
    version: str = Field("0.0.0", max_length=64)
    capabilities: list[Capability] = Field(default_factory=list, max_length=100)
    contactEndpoint: str | None = Field(None, max_length=2048, pattern=r"^https?://")
    metadata: dict[str, Any] = Field(default_factory=dict)


class WebhookEvent(BaseModel):
    event_type: Literal["REGISTER", "DEREGISTER"]
    agent_details: WebhookAgentDetails


# --- sessions -------------------------------------------------------------------------------


class SessionStatus(StrEnum):
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
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


# --- workflows ------------------------------------------------------------------------------


class RetryPolicy(ApiModel):
    max_attempts: int | None = Field(None, ge=1, le=100, description="Default: server setting.")
    backoff_seconds: float | None = Field(None, ge=0, le=3600)
    backoff_multiplier: float = Field(2.0, ge=1, le=10)
    max_backoff_seconds: float | None = Field(None, ge=0, le=86400)
    jitter: float = Field(0.2, ge=0, le=1, description="Random +/- fraction of each delay.")


class TaskDefinition(ApiModel):
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


class WorkflowDefinition(ApiModel):
    """A template; the prototype's format (id, name, description, version, tasks) loads as is."""

    id: str = Field(pattern=ID_PATTERN, examples=["research-digest"])
    name: str = Field("", max_length=200)
    description: str = Field("", max_length=4000)
    version: str = Field("1.0", max_length=64)
    tasks: list[TaskDefinition] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, (int, float)) else value


class WorkflowTemplate(WorkflowDefinition):
    created_at: datetime
    source: str = "api"


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
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskAttempt(ApiModel):
    attempt: int
    agent_id: str | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: str | None = None
    error: str | None = None


class TaskRun(ApiModel):
    task_id: str = Field(description="Unique run id; agents dedupe on it (opscore_task_id).")
    session_id: str
    step_id: str = Field(description="The taskId in the template.")
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
    attempts: int = 0
    uncharged_attempts: int = Field(
        0, description="Attempts not charged to the retry budget (agent lost, or re-driven)."
    )
    agent_id: str | None = None
    history: list[TaskAttempt] = Field(default_factory=list)
    result: Any = None
    error: str | None = None
    created_at: datetime
    queued_at: datetime | None = None
    ready_at: datetime | None = None
    dispatched_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    deadline: datetime | None = None
    cancel_reason: str | None = None


class TaskResultReport(ApiModel):
    status: Literal["completed", "failed"] = Field(examples=["completed"])
    result: Any = None
    error: str | None = Field(None, max_length=4000)
    agent_id: str | None = Field(None, description="The reporting agent; checked if given.")


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

    A plain dataclass: the dispatcher handles thousands per second and never serialises them."""

    task_id: str
    priority: int
    ready_at: datetime
    seq: int


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    """The one error shape: ``detail`` is what FastAPI clients and AgentKit's SDK read."""

    error: ErrorBody
    detail: str
    requestId: str | None = None
