"""The one rule every backend's ``record_state`` applies inside its own atomic section."""

from __future__ import annotations

from ..errors import ConflictError, NotFoundError
from ..models import Agent, StateRecord


def same_state(current: Agent, record: StateRecord) -> bool:
    """True when a report repeats the agent's current state exactly (a replay)."""
    return (
        current.state_timestamp == record.timestamp
        and current.state == record.state
        and current.state_details == record.details
    )


def apply_state(agent: Agent | None, record: StateRecord) -> tuple[Agent, bool]:
    """The agent after ``record``, and whether the record was a replay (agent unchanged).

    Raises NotFoundError for an unknown agent and ConflictError(STATE_OUT_OF_ORDER) for a
    report older than the current state.
    """
    if agent is None:
        raise NotFoundError(f"Agent '{record.agent_id}' is not registered", code="AGENT_NOT_FOUND")
    if same_state(agent, record):
        return agent, True
    if agent.state_timestamp is not None and record.timestamp < agent.state_timestamp:
        raise ConflictError(
            f"State report timestamp {record.timestamp.isoformat()} is older than the "
            f"current state's {agent.state_timestamp.isoformat()}",
            code="STATE_OUT_OF_ORDER",
        )
    updated = agent.model_copy(
        update={
            "state": record.state,
            "state_timestamp": record.timestamp,
            "state_details": record.details,
            "last_seen": record.received_at,
            "updated_at": record.received_at,
        }
    )
    return updated, False
