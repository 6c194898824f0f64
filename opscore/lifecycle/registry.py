"""The agent registry: registration (API or AgentKit's webhook), lookup, deregistration."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from ..errors import ConflictError, NotFoundError
from ..models import Agent, AgentCreate, Page, WebhookAgentDetails, utcnow
from ..models.a2a import A2ACard
from ..observe.logs import log_operation
from ..storage.base import Storage

_REGISTRATION_FIELDS = (
    "agent_name",
    "version",
    "capabilities",
    "contact_endpoint",
    "metadata",
    "max_concurrency",
)

AgentListener = Callable[[Agent], Awaitable[None]]


class AgentRegistry:
    """Who the agents are. Listeners hear of new agents (a report may be waiting for them)
    and of agents that go away (the workflow re-queues their tasks)."""

    def __init__(self, storage: Storage, clock: Callable[[], datetime] = utcnow) -> None:
        self.storage = storage
        self.clock = clock
        self.registered_listeners: list[AgentListener] = []
        self.gone_listeners: list[AgentListener] = []

    async def register_agent(self, data: AgentCreate) -> tuple[Agent, bool]:
        """Register a new agent. Returns (agent, created); repeating an identical
        registration returns the existing agent, a different one under the same id is 409."""
        now = self.clock()
        agent = Agent(
            **data.model_dump(exclude={"agent_id"}),
            agent_id=data.agent_id or str(uuid.uuid4()),
            last_seen=now,
            registered_at=now,
            updated_at=now,
        )
        existing = await self.storage.create_agent(agent)
        if existing is None:
            log_operation("agent.registered", {"agentId": agent.agent_id, "source": "api"})
            return await self._registered(agent), True
        if _registration(existing) == _registration(agent):
            return existing, False
        raise ConflictError(
            f"Agent '{agent.agent_id}' is already registered with different details",
            code="AGENT_EXISTS",
        )

    async def register_a2a(
        self,
        agent_id: str,
        *,
        card: A2ACard,
        capabilities: list[str],
        max_concurrency: int,
        metadata: dict[str, Any],
    ) -> tuple[Agent, bool]:
        """Register an A2A agent, or refresh one registered from the same card (an agent
        upgraded to new skills re-registers); another agent under that id is 409."""
        now = self.clock()
        fields: dict[str, Any] = {
            "agent_name": card.name or agent_id,
            "version": str(card.card.get("version") or "0.0.0")[:64],
            "capabilities": capabilities,
            "contact_endpoint": card.card_url,  # liveness probes the card
            "metadata": metadata,
            "max_concurrency": max_concurrency,
            "delivery": "a2a",
            "a2a": card,
        }
        # an A2A agent never reports a state: its card just answered, so it takes work now;
        # liveness probes the card from here on (offline when it stops answering)
        agent = Agent(
            agent_id=agent_id,
            last_seen=now,
            registered_at=now,
            updated_at=now,
            state="idle",
            state_timestamp=now,
            **fields,
        )
        existing = await self.storage.create_agent(agent)
        if existing is None:
            log_operation("agent.registered", {"agentId": agent_id, "source": "a2a"})
            return await self._registered(agent), True
        if existing.a2a is None or existing.a2a.card_url != card.card_url:
            raise ConflictError(
                f"Agent '{agent_id}' is already registered with different details",
                code="AGENT_EXISTS",
            )
        updated = await self.storage.update_agent(agent_id, {**fields, "updated_at": now})
        if updated is None:  # deregistered in between: register afresh
            return await self.register_a2a(
                agent_id,
                card=card,
                capabilities=capabilities,
                max_concurrency=max_concurrency,
                metadata=metadata,
            )
        return updated, False

    async def apply_webhook_registration(self, details: WebhookAgentDetails) -> Agent:
        """AgentKit's REGISTER: create or refresh the agent, keeping its state (idempotent)."""
        now = self.clock()
        fields: dict[str, Any] = {
            "agent_name": details.agentName or details.agentId,
            "version": details.version,
            "capabilities": list(dict.fromkeys(details.capabilities)),
            "contact_endpoint": details.contactEndpoint,
            "metadata": details.metadata,
        }
        existing = await self.storage.get_agent(details.agentId)
        # a registration again is the agent's program started again, maybe another one: its
        # reports are not known to name their tasks until one does
        refresh = {**fields, "names_tasks": False, "updated_at": now}
        if existing is None:
            agent = Agent(
                agent_id=details.agentId,
                last_seen=now,
                registered_at=now,
                updated_at=now,
                source="webhook",
                **fields,
            )
            if await self.storage.create_agent(agent) is None:
                log_operation("agent.registered", {"agentId": agent.agent_id, "source": "webhook"})
                return await self._registered(agent)
        updated = await self.storage.update_agent(details.agentId, refresh)
        if updated is None:  # deleted in between: register afresh
            return await self.apply_webhook_registration(details)
        return updated

    async def _registered(self, agent: Agent) -> Agent:
        for listener in self.registered_listeners:
            await listener(agent)
        return await self.storage.get_agent(agent.agent_id) or agent

    async def get_agent(self, agent_id: str) -> Agent:
        """The agent, or NotFoundError (AGENT_NOT_FOUND)."""
        agent = await self.storage.get_agent(agent_id)
        if agent is None:
            raise NotFoundError(f"Agent '{agent_id}' is not registered", code="AGENT_NOT_FOUND")
        return agent

    async def list_agents(
        self, *, state: str | None, capability: str | None, offset: int, limit: int
    ) -> Page[Agent]:
        """One page of agents, optionally only those in a state or with a capability."""
        return await self.storage.list_agents(
            state=state, capability=capability, offset=offset, limit=limit
        )

    async def deregister_agent(self, agent_id: str) -> Agent:
        """Remove an agent and its history; its in-flight tasks go back to the queue."""
        agent = await self.storage.delete_agent(agent_id)
        if agent is None:
            raise NotFoundError(f"Agent '{agent_id}' is not registered", code="AGENT_NOT_FOUND")
        log_operation("agent.deregistered", {"agentId": agent_id})
        for listener in self.gone_listeners:
            await listener(agent)
        return agent


def _registration(agent: Agent) -> dict[str, Any]:
    return agent.model_dump(include=set(_REGISTRATION_FIELDS))
