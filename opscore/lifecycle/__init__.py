"""Agents: the registry, their reported lifecycle state, and liveness."""

from .liveness import Liveness
from .registry import AgentRegistry
from .state import IDLE_STATES, OFFLINE, AgentStates

__all__ = ["IDLE_STATES", "OFFLINE", "AgentRegistry", "AgentStates", "Liveness"]
