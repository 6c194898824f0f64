"""Steps that wait for a person or an event: the wait policy in a template, the decision that
ends the wait, and what the API lists and accepts."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from .common import ID_PATTERN, ApiModel

StepKind = Literal["agent", "approval", "signal"]
TimeoutOutcome = Literal["approve", "reject", "complete", "fail"]

# the longest a step may wait: thirty days
MAX_WAIT_SECONDS = 2_592_000


class WaitPolicy(ApiModel):
    """How an ``approval`` or ``signal`` step waits, and what its timeout decides."""

    model_config = ConfigDict(extra="forbid")

    signal: str | None = Field(
        None,
        pattern=ID_PATTERN,
        description="The signal's name (signal steps): what a caller sends to end the wait.",
        examples=["payment-received"],
    )
    prompt: str = Field(
        "",
        max_length=2000,
        description="What the decision is about, shown to whoever decides.",
        examples=["Publish this digest?"],
    )
    timeout_seconds: float | None = Field(
        None,
        gt=0,
        le=MAX_WAIT_SECONDS,
        description="How long to wait; none: until decided or the run is cancelled.",
        examples=[3600],
    )
    on_timeout: TimeoutOutcome | None = Field(
        None,
        description=(
            "What a timeout decides: approve or reject (approval steps, default reject), "
            "complete or fail (signal steps, default fail)."
        ),
    )
    on_reject: Literal["fail", "continue"] = Field(
        "fail",
        description=(
            "fail: a rejection fails the step (its fallback runs, else the run fails); "
            "continue: the step completes with approved=false for later conditions to read."
        ),
    )


class Decision(ApiModel):
    """How a wait ended; it is also the step's result (``${tasks.<id>.result}``)."""

    outcome: Literal["approved", "rejected", "signalled", "timed_out"]
    approved: bool | None = Field(None, description="Approval steps: the verdict.")
    signal: str | None = None
    comment: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)
    decided_by: str = Field(description="The API key's name, or 'opscore:timeout'.")
    decided_at: datetime


class DecisionRequest(ApiModel):
    """An operator's approval or rejection of a waiting step."""

    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(None, max_length=4000, examples=["Looks right; ship it"])
    payload: dict[str, Any] = Field(
        default_factory=dict,
        description="Data for later steps, at ${tasks.<id>.result.payload}.",
        examples=[{"channel": "#releases"}],
    )


class SignalRequest(ApiModel):
    """A named signal's payload."""

    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any] = Field(default_factory=dict, examples=[{"amount": 42}])


class WaitingStep(ApiModel):
    """A step waiting for a decision: what it waits for, since when and until when."""

    task_id: str
    session_id: str
    workflow_id: str | None = None
    step_id: str
    name: str = ""
    kind: StepKind
    signal: str | None = None
    prompt: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="The step's parameters, earlier results substituted."
    )
    waiting_since: datetime | None = None
    deadline: datetime | None = None
    on_timeout: TimeoutOutcome | None = None
