"""AgentKit's signed registration webhook: no API key, an HMAC over the raw body instead."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Header, Request
from pydantic import ValidationError

from ...errors import NotFoundError, UnprocessableError
from ...models import StatusMessage, WebhookEvent
from ..deps import ServicesDep
from . import ERRORS

router = APIRouter(prefix="/v1/opscore/internal", tags=["webhooks"])

_BODY = {
    "content": {
        "application/json": {
            "schema": WebhookEvent.model_json_schema(ref_template="#/components/schemas/{model}"),
            "example": {
                "event_type": "REGISTER",
                "agent_details": {
                    "agentId": "summarizer-1",
                    "agentName": "summarizer",
                    "version": "0.1.0",
                    "capabilities": ["summarize"],
                    "contactEndpoint": "http://10.0.0.7:8101/",
                    "metadata": {},
                },
            },
        }
    },
    "required": True,
}


@router.post(
    "/agent/notify",
    summary="AgentKit registration webhook (REGISTER / DEREGISTER)",
    response_model=StatusMessage,
    responses={401: ERRORS[401], 422: ERRORS[422], 404: {"description": "Webhook not configured"}},
    openapi_extra={"requestBody": _BODY, "security": []},
)
async def agent_notify(
    request: Request,
    services: ServicesDep,
    x_agentkit_timestamp: Annotated[str | None, Header(max_length=32)] = None,
    x_agentkit_signature: Annotated[str | None, Header(max_length=128)] = None,
) -> StatusMessage:
    """Verifies ``X-AgentKit-Signature = hex(HMAC-SHA256(secret, "<timestamp>." + body))``
    over the raw bytes, refuses stale timestamps and replays, then registers or deregisters.
    Repeating an event (with a fresh signature) is harmless."""
    if services.webhook is None:
        raise NotFoundError(
            "Webhook disabled: OPSCORE_WEBHOOK_SECRET is not set", code="WEBHOOK_DISABLED"
        )
    body = await request.body()
    services.webhook.verify(x_agentkit_timestamp, x_agentkit_signature, body, now=time.time())
    try:
        event = WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        raise UnprocessableError(
            "Invalid webhook body",
            details=[{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
        ) from None
    agent_id = event.agent_details.agentId
    if event.event_type == "REGISTER":
        await services.agents.apply_webhook_registration(event.agent_details)
        return StatusMessage(message=f"Agent '{agent_id}' registered")
    try:
        await services.agents.deregister_agent(agent_id)
    except NotFoundError:
        return StatusMessage(message=f"Agent '{agent_id}' was not registered")
    return StatusMessage(message=f"Agent '{agent_id}' deregistered")
