"""Workflows: templates, sessions, runs, the engine that advances them, and their outcomes."""

from .assembly import Workflow, build_workflow
from .engine import WorkflowEngine

__all__ = ["Workflow", "WorkflowEngine", "build_workflow"]
