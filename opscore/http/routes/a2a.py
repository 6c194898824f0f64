"""A2A agents: registration by agent card, and the push notifications their tasks send back."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Header, Path, Request, Response, status

from ...errors import UnprocessableError
from ...models import ID_PATTERN, Agent
from ...models.a2a import A2ANotificationAccepted, A2ARegistration
from ..deps import ServicesDep, require
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/agents", tags=["agents"], responses=ERRORS)
# no API key: an A2A agent knows only the token Ops-Core gave it with the task
notifications = APIRouter(prefix="/v1/opscore/internal/a2a", tags=["webhooks"])

_NOTIFICATION_EXAMPLE = {
    "statusUpdate": {
        "taskId": "5f0c3c6e-1d7e-4e55-9a61-4c1b0f8f2d10",
        "contextId": "9b8a3f1e-6a55-4f1c-8d2e-0f2a7c9e4b11",
        "status": {"state": "TASK_STATE_COMPLETED"},
    }
}


@router.post(
    "/a2a",
    summary="Register an A2A agent by its agent card",
    status_code=status.HTTP_201_CREATED,
    response_model=Agent,
    responses={
        200: {"model": Agent, "description": "Already registered from this card: refreshed"},
        **CONFLICT,
    },
    dependencies=[require("agents:write")],
)
async def register_a2a_agent(
    body: Annotated[
        A2ARegistration,
        Body(
            examples=[
                {
                    "cardUrl": "http://10.0.0.9:41241/.well-known/agent-card.json",
                    "agentId": "hello-a2a",
                    "maxConcurrency": 4,
                }
            ]
        ),
    ],
    services: ServicesDep,
    response: Response,
) -> Agent:
    """Reads the card (`/.well-known/agent-card.json` under a base URL), picks the interface
    to use (JSON-RPC, else HTTP+JSON; protocol 1.0, else 0.3) and registers the agent with
    `delivery: a2a`; its skill ids become capabilities. A card that cannot be read, is not a
    card or offers no interface Ops-Core speaks is 422 `A2A_CARD_UNREADABLE`, saying why. Registering again from the same card
    refreshes the agent (new skills, a new interface). Tasks then go to it with `SendMessage`
    (docs/a2a.md)."""
    agent, created = await services.workflow.a2a.register(body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return agent


@notifications.post(
    "/tasks/{taskId}/notify",
    summary="A2A push notification about a task",
    response_model=A2ANotificationAccepted,
    responses={
        401: {"description": "Missing or wrong X-A2A-Notification-Token"},
        **NOT_FOUND,
        422: ERRORS[422],
        413: ERRORS[413],
    },
    openapi_extra={
        "security": [],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "object", "description": "An A2A StreamResponse"},
                    "example": _NOTIFICATION_EXAMPLE,
                }
            },
        },
    },
)
async def a2a_notification(
    taskId: Annotated[
        str, Path(pattern=ID_PATTERN, description="The Ops-Core task.", examples=["t-1"])
    ],
    request: Request,
    services: ServicesDep,
    x_a2a_notification_token: Annotated[str | None, Header(max_length=256)] = None,
) -> A2ANotificationAccepted:
    """Where A2A agents push their task updates (the URL Ops-Core gives with `SendMessage`
    when `OPSCORE_PUBLIC_URL` is set). The token must be the one given for the task's current
    attempt; a status that ends the task is then read in full with `GetTask`."""
    body = _json_object(await request.body())
    return await services.workflow.a2a.notified(taskId, x_a2a_notification_token, body)


def _json_object(raw: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise UnprocessableError("The notification is not JSON", code="INVALID_JSON") from None
    if not isinstance(data, dict):
        raise UnprocessableError("The notification must be a JSON object")
    return data
