"""Workflow templates: parsing (JSON/YAML) and validation of the task graph.

Pure functions, no I/O beyond reading a template directory, so they are easy to test and fuzz.
References inside parameters are checked here and resolved by ``substitution``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import BadRequestError
from ..models import TaskDefinition, WorkflowDefinition
from .conditions import compile_condition, condition_task_refs
from .substitution import TemplateError, task_references

_MAX_DEPTH = 32


def parse_template_text(text: str | bytes, *, content_type: str = "") -> dict[str, Any]:
    """Parse a JSON or YAML document (YAML is a superset; JSON is tried first)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequestError("Template is not valid UTF-8", code="INVALID_TEMPLATE") from None
    try:
        data = json.loads(text)
    except ValueError:
        if "json" in content_type:
            raise BadRequestError("Template is not valid JSON", code="INVALID_JSON") from None
        data = _load_yaml(text)
    if not isinstance(data, dict):
        raise BadRequestError("A template must be a JSON/YAML object", code="INVALID_TEMPLATE")
    return data


# libyaml's parser when PyYAML was built with it: the same documents, ten times faster
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str) -> Any:
    """Safe YAML without aliases. A few hundred bytes of anchors and aliases expand to tens of
    megabytes (the "billion laughs"); a template never needs them, so any alias is refused
    before anything is built."""
    try:
        for event in yaml.parse(text, Loader=_LOADER):
            if isinstance(event, yaml.AliasEvent):
                line = event.start_mark.line + 1 if event.start_mark else 0
                raise BadRequestError(
                    f"Template uses a YAML alias (*{event.anchor}, line {line}); aliases are "
                    "not allowed: write the value out",
                    code="YAML_ALIAS_REFUSED",
                )
        return yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise BadRequestError(
            f"Template is not valid YAML: {exc}", code="INVALID_TEMPLATE"
        ) from None


def build_definition(data: Mapping[str, Any], *, max_tasks: int) -> WorkflowDefinition:
    """Validate a raw template into a definition; every error names its field or task."""
    try:
        definition = WorkflowDefinition.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        raise TemplateError(
            f"Template is invalid: {describe_error(errors[0], data)}",
            details=[{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors],
        ) from None
    validate_definition(definition, max_tasks=max_tasks)
    return definition


def describe_error(error: Mapping[str, Any], data: Any = None) -> str:
    """One validation error as a sentence naming the field (and the task, when in one):
    "unknown field 'whenn' in task 'fetch'" rather than a bare "extra inputs"."""
    loc = [str(p) for p in error.get("loc", ())]
    where = ".".join(loc) or "template"
    task = _task_named(loc, data)
    suffix = f" in task '{task}'" if task else ""
    if error.get("type") == "extra_forbidden":
        return f"unknown field '{loc[-1] if loc else where}'{suffix} (at {where})"
    return f"{where}{suffix}: {error.get('msg', 'invalid')}"


def _task_named(loc: list[str], data: Any) -> str | None:
    """The taskId of the task a location points into, if it has one."""
    if len(loc) < 2 or loc[0] != "tasks" or not loc[1].isdigit() or not isinstance(data, Mapping):
        return None
    tasks = data.get("tasks")
    index = int(loc[1])
    if isinstance(tasks, list) and index < len(tasks) and isinstance(tasks[index], Mapping):
        task_id = tasks[index].get("taskId", tasks[index].get("task_id"))
        return task_id if isinstance(task_id, str) else None
    return None


def dependencies(definition: WorkflowDefinition) -> dict[str, set[str]]:
    """Each task's prerequisites: its dependsOn plus every task whose nextTaskId names it."""
    deps: dict[str, set[str]] = {t.task_id: set(t.depends_on) for t in definition.tasks}
    for task in definition.tasks:
        if task.next_task_id is not None and task.next_task_id in deps:
            deps[task.next_task_id].add(task.task_id)
    return deps


def fallback_ids(definition: WorkflowDefinition) -> set[str]:
    return {t.fallback_task_id for t in definition.tasks if t.fallback_task_id}


def validate_definition(definition: WorkflowDefinition, *, max_tasks: int) -> None:
    """Reject duplicate ids, unknown references, cycles and unreachable tasks. A definition
    that passed under the same task limit is not checked again (``_checked_for``)."""
    if definition._checked_for == max_tasks:
        return
    tasks = definition.tasks
    if len(tasks) > max_tasks:
        raise TemplateError(f"Template has {len(tasks)} tasks; the limit is {max_tasks}")
    ids = [t.task_id for t in tasks]
    seen: set[str] = set()
    for task_id in ids:
        if task_id in seen:
            raise TemplateError(f"Task '{task_id}' is defined twice")
        seen.add(task_id)
    by_id = {t.task_id: t for t in tasks}
    for task in tasks:
        _check_task_refs(task, by_id)
    fallbacks = fallback_ids(definition)
    for fb in fallbacks:
        users = [t.task_id for t in tasks if t.fallback_task_id == fb]
        if len(users) > 1:
            raise TemplateError(
                f"Fallback task '{fb}' serves {', '.join(users)}; a fallback serves one task"
            )
    deps = dependencies(definition)
    for fb in fallbacks:
        if deps[fb] or any(fb in deps[t] for t in ids):
            raise TemplateError(
                f"Fallback task '{fb}' must stand alone: no dependsOn/nextTaskId to or from it"
            )
        if by_id[fb].fallback_task_id:
            raise TemplateError(f"Fallback task '{fb}' cannot have a fallback of its own")
    main = [t for t in ids if t not in fallbacks]
    order = _topological_order(main, deps)
    if not order:
        raise TemplateError("Template has no task to start with (every task waits on another)")
    ancestors = _ancestors(order, deps)
    for task in tasks:
        allowed = ancestors.get(task.task_id, set())
        if task.task_id in fallbacks:
            allowed = set().union(
                *(ancestors[t.task_id] for t in tasks if t.fallback_task_id == task.task_id)
            )
        refs = [(ref, "parameters") for ref in task_references(task.parameters)]
        if task.when is not None:
            if task.task_id in fallbacks:
                raise TemplateError(
                    f"Fallback task '{task.task_id}' cannot have a condition (when): it runs "
                    "when the task it stands in for failed; give the condition to that task"
                )
            compile_condition(task.when)
            refs += [(ref, "condition") for ref in sorted(condition_task_refs(task.when))]
        for ref, where in refs:
            if ref not in by_id:
                raise TemplateError(
                    f"Task '{task.task_id}' references unknown task '{ref}' in its {where}"
                )
            if ref not in allowed:
                raise TemplateError(
                    f"Task '{task.task_id}' references task '{ref}' in its {where}, which does "
                    "not run before it"
                )
    definition._checked_for = max_tasks


def _check_task_refs(task: TaskDefinition, by_id: Mapping[str, TaskDefinition]) -> None:
    for label, ref in (
        ("nextTaskId", task.next_task_id),
        ("fallbackTaskId", task.fallback_task_id),
        *(("dependsOn", d) for d in task.depends_on),
    ):
        if ref is None:
            continue
        if ref not in by_id:
            raise TemplateError(f"Task '{task.task_id}' {label} names unknown task '{ref}'")
        if ref == task.task_id:
            raise TemplateError(f"Task '{task.task_id}' {label} names itself")
    _check_kind(task)
    if task.target == "agent" and not task.agent_id:
        raise TemplateError(f"Task '{task.task_id}' has target 'agent' but no agentId")
    if task.target == "capability" and not task.agent_capability:
        raise TemplateError(f"Task '{task.task_id}' has target 'capability' but no agentCapability")
    try:
        _check_depth(task.parameters, 0)
    except RecursionError:  # pragma: no cover - guarded by _MAX_DEPTH
        raise TemplateError(f"Task '{task.task_id}' parameters nest too deeply") from None


_TIMEOUT_OUTCOMES = {"approval": ("approve", "reject"), "signal": ("complete", "fail")}


def _check_kind(task: TaskDefinition) -> None:
    """Approval and signal steps wait for a decision, not an agent: no agent fields on them,
    and a wait policy that fits their kind."""
    name = f"Task '{task.task_id}'"
    if task.kind == "agent":
        if task.wait is not None:
            raise TemplateError(f"{name} has a wait policy; only approval and signal steps wait")
        return
    if task.agent_capability or task.agent_id or task.target != "auto":
        raise TemplateError(
            f"{name} is a {task.kind} step: it waits for a decision, so agentCapability, "
            "agentId and target do not apply"
        )
    wait = task.wait
    if task.kind == "signal" and (wait is None or not wait.signal):
        raise TemplateError(f"{name} is a signal step: name its signal in wait.signal")
    if task.kind == "approval" and wait is not None and wait.signal:
        raise TemplateError(f"{name} is an approval step: wait.signal applies to signal steps")
    allowed = _TIMEOUT_OUTCOMES[task.kind]
    if wait is not None and wait.on_timeout is not None and wait.on_timeout not in allowed:
        raise TemplateError(
            f"{name}: wait.onTimeout of a {task.kind} step is {' or '.join(allowed)}, "
            f"not '{wait.on_timeout}'"
        )


def _check_depth(value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise TemplateError(f"Parameters nest deeper than {_MAX_DEPTH} levels")
    if isinstance(value, dict):
        for v in value.values():
            _check_depth(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _check_depth(v, depth + 1)


def _topological_order(ids: list[str], deps: Mapping[str, set[str]]) -> list[str]:
    remaining = {t: set(deps[t]) for t in ids}
    order: list[str] = []
    ready = [t for t in ids if not remaining[t]]
    while ready:
        current = ready.pop(0)
        order.append(current)
        for t in ids:
            if current in remaining[t]:
                remaining[t].discard(current)
                if not remaining[t] and t not in order and t not in ready:
                    ready.append(t)
    if len(order) != len(ids):
        stuck = sorted(set(ids) - set(order))
        if order:
            raise TemplateError(
                f"Template has a cycle or unreachable tasks: {', '.join(stuck)}",
                details={"tasks": stuck},
            )
        raise TemplateError(
            f"Template has a cycle through tasks: {', '.join(stuck)}", details={"tasks": stuck}
        )
    return order


def _ancestors(order: list[str], deps: Mapping[str, set[str]]) -> dict[str, set[str]]:
    result: dict[str, set[str]] = {}
    for task_id in order:
        found = set(deps[task_id])
        for d in deps[task_id]:
            found |= result.get(d, set())
        result[task_id] = found
    return result


def load_directory(path: Path, *, max_tasks: int) -> list[tuple[Path, WorkflowDefinition]]:
    """Every *.json, *.yaml and *.yml template in a directory, validated."""
    found = []
    for file in sorted(path.iterdir()):
        if file.suffix.lower() not in (".json", ".yaml", ".yml") or not file.is_file():
            continue
        data = parse_template_text(file.read_bytes(), content_type=file.suffix)
        found.append((file, build_definition(data, max_tasks=max_tasks)))
    return found
