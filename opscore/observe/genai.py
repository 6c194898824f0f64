"""Span names and attributes after the OpenTelemetry GenAI semantic conventions, so a trace
opened in Jaeger, Tempo, Langfuse or Phoenix reads as an agent workflow.

Followed: semantic-conventions-genai v0.1.0 (the first release of the repository the GenAI
conventions moved to, after semantic-conventions v1.41.0), "GenAI agent and framework spans":
- a hand-over is an *invoke agent client span*: ``invoke_agent {gen_ai.agent.name}``, kind
  CLIENT, ``gen_ai.operation.name = invoke_agent``, ``gen_ai.agent.id``/``name``/``version``,
  ``gen_ai.conversation.id`` (the run's session id), ``server.address``/``server.port`` of the
  endpoint called, ``error.type`` when it failed;
- a run is ``invoke_workflow {workflow}``: in v0.1.0 the workflow span is an internal agent
  span whose ``gen_ai.operation.name`` stays ``invoke_workflow`` and whose workflow name is
  ``gen_ai.agent.name`` (``gen_ai.workflow.name`` was replaced).
The conventions are at Development status and may change; names live here only.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..models import Agent

CONVENTIONS = "semantic-conventions-genai v0.1.0"
OPERATION = "gen_ai.operation.name"
AGENT_ID = "gen_ai.agent.id"
AGENT_NAME = "gen_ai.agent.name"
AGENT_VERSION = "gen_ai.agent.version"
CONVERSATION_ID = "gen_ai.conversation.id"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
ERROR_TYPE = "error.type"


def invoke_agent(agent: Agent, session_id: str, endpoint: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        OPERATION: "invoke_agent",
        AGENT_ID: agent.agent_id,
        AGENT_NAME: agent.agent_name or agent.agent_id,
        AGENT_VERSION: agent.version,
        CONVERSATION_ID: session_id,
    }
    if endpoint:
        parts = urlsplit(endpoint)
        if parts.hostname:
            attributes["server.address"] = parts.hostname
            attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return attributes


def invoke_workflow(workflow_id: str, session_id: str) -> dict[str, Any]:
    return {OPERATION: "invoke_workflow", AGENT_NAME: workflow_id, CONVERSATION_ID: session_id}


def usage(reported: dict[str, Any] | None) -> dict[str, Any]:
    """Token usage an agent reported (``models.usage.usage_from``) as span attributes."""
    if not reported:
        return {}
    attributes: dict[str, Any] = {}
    if "input_tokens" in reported:
        attributes[INPUT_TOKENS] = reported["input_tokens"]
    if "output_tokens" in reported:
        attributes[OUTPUT_TOKENS] = reported["output_tokens"]
    if "model" in reported:
        attributes["gen_ai.response.model"] = reported["model"]
    return attributes
