"""The template catalog: stored, versioned workflow templates."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from ..config import Settings
from ..errors import ConfigError, ConflictError, NotFoundError, OpsCoreError
from ..models import Page, WorkflowDefinition, WorkflowTemplate, utcnow
from ..observe.logs import log_operation
from ..storage.base import Storage
from .templates import (
    build_definition,
    load_directory,
    parse_template_text,
    validate_definition,
)


class TemplateCatalog:
    """Create, read, list and delete template versions; versions are immutable."""

    def __init__(
        self, storage: Storage, settings: Settings, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.clock = clock

    async def parse(self, raw: bytes, *, content_type: str = "") -> WorkflowDefinition:
        """A request body (JSON or YAML) as a validated definition. Parsing and validation run
        in a worker thread, so a large template never stalls other requests."""
        max_tasks = self.settings.max_template_tasks

        def parse_and_validate() -> WorkflowDefinition:
            data = parse_template_text(raw, content_type=content_type)
            return build_definition(data, max_tasks=max_tasks)

        return await asyncio.to_thread(parse_and_validate)

    async def create_template(
        self, definition: WorkflowDefinition, *, source: str = "api"
    ) -> tuple[WorkflowTemplate, bool]:
        """Store a template version; an identical repeat is a no-op, a different one 409."""
        validate_definition(definition, max_tasks=self.settings.max_template_tasks)
        template = WorkflowTemplate(
            **definition.model_dump(), created_at=self.clock(), source=source
        )
        existing = await self.storage.save_workflow(template)
        if existing is None:
            log_operation(
                "workflow.created", {"workflowId": template.id, "version": template.version}
            )
            return template, True
        if existing.definition() == definition:
            return existing, False
        raise ConflictError(
            f"Workflow '{definition.id}' version '{definition.version}' exists with a different "
            "definition; bump the version",
            code="WORKFLOW_VERSION_EXISTS",
        )

    async def get_template(self, workflow_id: str, version: str | None = None) -> WorkflowTemplate:
        """The template (its newest version unless one is named), or NotFoundError."""
        template = await self.storage.get_workflow(workflow_id, version)
        if template is None:
            suffix = f" version '{version}'" if version else ""
            raise NotFoundError(
                f"Workflow '{workflow_id}'{suffix} not found", code="WORKFLOW_NOT_FOUND"
            )
        return template

    async def delete_template(self, workflow_id: str, version: str | None = None) -> int:
        """Delete one version, or every version; returns how many were removed."""
        removed = await self.storage.delete_workflow(workflow_id, version)
        if not removed:
            raise NotFoundError(f"Workflow '{workflow_id}' not found", code="WORKFLOW_NOT_FOUND")
        log_operation("workflow.deleted", {"workflowId": workflow_id, "version": version})
        return removed

    async def list_templates(self, *, offset: int, limit: int) -> Page[WorkflowTemplate]:
        """One page of templates."""
        return await self.storage.list_workflows(offset=offset, limit=limit)

    async def load_directory(self, directory: Path) -> int:
        """Store every template file in a directory (``OPSCORE_WORKFLOWS_DIR``) at start-up.

        Raises ConfigError naming the file when one is invalid or clashes with a stored one.
        """
        if not directory.is_dir():
            raise ConfigError(f"OPSCORE_WORKFLOWS_DIR {directory} is not a directory")
        try:
            found = load_directory(directory, max_tasks=self.settings.max_template_tasks)
        except OpsCoreError as exc:
            raise ConfigError(
                f"Template in {directory} is invalid: {exc.message} {exc.details or ''}"
            ) from exc
        for path, definition in found:
            try:
                await self.create_template(definition, source=f"file:{path.name}")
            except OpsCoreError as exc:
                raise ConfigError(f"Template {path}: {exc.message}") from exc
        return len(found)
