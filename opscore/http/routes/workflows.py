"""Workflow templates and triggering runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Path, Query, Request, Response, status

from ...errors import BadRequestError
from ...models import (
    ID_PATTERN,
    IDEMPOTENCY_KEY_PATTERN,
    Page,
    RunAccepted,
    RunCreate,
    WorkflowTemplate,
    WorkflowTrigger,
)
from ..deps import PagingDep, ServicesDep, require
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore", tags=["workflows"], responses=ERRORS)
WorkflowId = Annotated[
    str, Path(pattern=ID_PATTERN, description="The template's id.", examples=["digest"])
]
AgentId = Annotated[str, Path(pattern=ID_PATTERN, description="The agent to pin the run to.")]
Version = Annotated[str | None, Query(max_length=64, description="A version; newest if omitted.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description=(
            "Repeat a trigger safely: the same key with the same request returns the first run; "
            "with a different request it is 422 IDEMPOTENCY_KEY_REUSED. 1-200 visible ASCII "
            "characters."
        ),
    ),
]

_SCHEMA_REF = {"$ref": "#/components/schemas/WorkflowDefinition"}
_TEMPLATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": _SCHEMA_REF,
                "example": {
                    "id": "research-digest",
                    "name": "Research digest",
                    "description": "Fetch, summarize",
                    "version": "1.0",
                    "tasks": [
                        {
                            "taskId": "fetch",
                            "name": "Fetch",
                            "agentCapability": "fetch",
                            "parameters": {"topic": "${input.topic}"},
                            "nextTaskId": "summarize",
                        },
                        {
                            "taskId": "summarize",
                            "name": "Summarize",
                            "agentCapability": "summarize",
                            "parameters": {"text": "${tasks.fetch.result.text}"},
                            "nextTaskId": None,
                        },
                    ],
                },
            },
            "application/yaml": {"schema": _SCHEMA_REF},
        },
    }
}


@router.post(
    "/workflows",
    summary="Create a workflow template (JSON or YAML body)",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkflowTemplate,
    responses={
        200: {"model": WorkflowTemplate, "description": "Identical version existed"},
        **CONFLICT,
    },
    openapi_extra=_TEMPLATE_BODY,
    dependencies=[require("workflows:write")],
)
async def create_workflow(
    request: Request, services: ServicesDep, response: Response
) -> WorkflowTemplate:
    """Send the template as ``application/json`` or ``application/yaml``. The prototype's
    format loads unchanged. Versions are immutable: the same id and version with a different
    definition is 409."""
    raw = await request.body()
    if not raw.strip():
        raise BadRequestError("Request body is empty; send a template", code="EMPTY_BODY")
    definition = await services.workflow.templates.parse(
        raw, content_type=request.headers.get("content-type", "")
    )
    template, created = await services.workflow.templates.create_template(definition)
    if not created:
        response.status_code = status.HTTP_200_OK
    return template


@router.get(
    "/workflows",
    summary="List workflow templates (newest version of each)",
    response_model=Page[WorkflowTemplate],
    dependencies=[require("read")],
)
async def list_workflows(services: ServicesDep, paging: PagingDep) -> Page[WorkflowTemplate]:
    return await services.workflow.templates.list_templates(
        offset=paging.offset, limit=paging.limit
    )


@router.get(
    "/workflows/{workflowId}",
    summary="Get a workflow template",
    response_model=WorkflowTemplate,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def get_workflow(
    workflowId: WorkflowId,
    services: ServicesDep,
    version: Version = None,
) -> WorkflowTemplate:
    return await services.workflow.templates.get_template(workflowId, version)


@router.delete(
    "/workflows/{workflowId}",
    summary="Delete a template (one version, or all)",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    dependencies=[require("workflows:write")],
)
async def delete_workflow(
    workflowId: WorkflowId,
    services: ServicesDep,
    version: Version = None,
) -> Response:
    """Runs already started keep going: each holds its own copy of the tasks."""
    await services.workflow.templates.delete_template(workflowId, version)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/workflows/{workflowId}/runs",
    summary="Run a template",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunAccepted,
    responses={**NOT_FOUND},
    dependencies=[require("runs:write")],
)
async def run_workflow(
    workflowId: WorkflowId,
    services: ServicesDep,
    body: Annotated[RunCreate, Body(examples=[{"initialPayload": {"topic": "agents"}}])] = None,  # type: ignore[assignment]
    idempotency_key: IdempotencyKey = None,
) -> RunAccepted:
    """Tasks go to any available agent with the right capability (or the agent given).

    The gateway answers a well-formed call itself (``opscore/http/run_trigger.py``); this route
    documents it and answers the rest."""
    return await services.workflow.run_template(
        workflowId, body or RunCreate(), idempotency_key=idempotency_key
    )


@router.post(
    "/agent/{agentId}/workflow",
    summary="Run a workflow pinned to an agent (prototype request)",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunAccepted,
    responses={**NOT_FOUND},
    dependencies=[require("runs:write")],
)
async def trigger_for_agent(
    agentId: AgentId,
    body: Annotated[
        WorkflowTrigger,
        Body(
            examples=[
                {"workflowDefinitionId": "research-digest", "initialPayload": {"topic": "agents"}}
            ]
        ),
    ],
    services: ServicesDep,
    idempotency_key: IdempotencyKey = None,
) -> RunAccepted:
    """Give ``workflowDefinitionId`` (a stored template) or an inline ``workflowDefinition``.
    Tasks without their own agentId run on this agent."""
    return await services.workflow.run_for_agent(agentId, body, idempotency_key=idempotency_key)
