"""Parameter substitution: ``${...}`` references resolved against a run's context.

Syntax: ``${input.path}``, ``${tasks.<taskId>.result.path}``, ``${tasks.<taskId>.status}``,
``${session.id}``, ``${session.agentId}``. A string that is exactly one reference takes the
referenced value with its type; references inside longer strings are rendered as text. Paths are
dotted keys or list indexes; nothing is evaluated, so templates cannot run code or read files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UnprocessableError

REFERENCE = re.compile(r"\$\{([^{}]{1,300})\}")
_PATH_PART = re.compile(r"^[A-Za-z0-9_@:.-]{1,128}$")


class TemplateError(UnprocessableError):
    """A template (or a reference inside one) is not valid."""

    code = "INVALID_TEMPLATE"


def iter_strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from iter_strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from iter_strings(v)


def task_references(parameters: Any) -> set[str]:
    """Task ids that ``${tasks.<id>...}`` references in parameters point at."""
    refs: set[str] = set()
    for text in iter_strings(parameters):
        for match in REFERENCE.finditer(text):
            parts = _split_reference(match.group(1))
            if parts[0] == "tasks":
                if len(parts) < 3 or parts[2] not in ("result", "status"):
                    raise TemplateError(
                        f"Reference '${{{match.group(1)}}}' must be tasks.<taskId>.result[...] "
                        "or tasks.<taskId>.status"
                    )
                refs.add(parts[1])
    return refs


def reference_roots(parameters: Any) -> set[str]:
    """What the references in parameters start with: ``input``, ``tasks``, ``session``."""
    return {
        _split_reference(match.group(1))[0]
        for text in iter_strings(parameters)
        for match in REFERENCE.finditer(text)
    }


def _split_reference(expr: str) -> list[str]:
    parts = expr.strip().split(".")
    if parts[0] not in ("input", "tasks", "session") or not all(_PATH_PART.match(p) for p in parts):
        raise TemplateError(
            f"Reference '${{{expr}}}' must start with input., tasks. or session. and use dotted names"
        )
    if parts[0] == "tasks" and len(parts) < 2:
        raise TemplateError(f"Reference '${{{expr}}}' must name a task")
    if parts[0] == "session" and (len(parts) != 2 or parts[1] not in ("id", "agentId")):
        raise TemplateError(f"Reference '${{{expr}}}': session offers only id and agentId")
    return parts


def _lookup(value: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(value, Mapping) and key in value:
            value = value[key]
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


class SubstitutionTooLargeError(UnprocessableError):
    """The parameters after substitution exceed the allowed size."""

    code = "SUBSTITUTION_TOO_LARGE"


class _Budget:
    """Bytes the resolved parameters may still take; the size of a value referenced many times
    is measured once (by identity), so checking costs no more than the expansion it prevents."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit
        self._sizes: dict[int, int] = {}

    def spend(self, size: int) -> None:
        self.left -= size
        if self.left < 0:
            raise SubstitutionTooLargeError(
                f"Task parameters would exceed {self.limit} bytes after substitution; "
                "reference less, or smaller values (OPSCORE_MAX_TASK_PARAMETERS_BYTES)"
            )

    def size_of(self, value: Any) -> int:
        if isinstance(value, str):
            return len(value)
        if value is None or isinstance(value, bool | int | float):
            return 8
        key = id(value)
        if key not in self._sizes:
            self._sizes[key] = len(json.dumps(value, separators=(",", ":"), default=str))
        return self._sizes[key]


def substitute(value: Any, context: Mapping[str, Any], *, limit: int | None = None) -> Any:
    """Resolve references in a parameter tree against ``context`` (input, tasks, session).

    Missing paths resolve to None (null); nothing is evaluated. With ``limit``, the result may
    take at most that many bytes (as JSON, roughly): SubstitutionTooLargeError is raised as soon as
    it would, before the expansion is built.
    """
    return _substitute(value, context, _Budget(limit) if limit is not None else None)


def _substitute(value: Any, context: Mapping[str, Any], budget: _Budget | None) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, context, budget) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, context, budget) for v in value]
    if not isinstance(value, str) or "${" not in value:
        if budget is not None:
            budget.spend(budget.size_of(value))
        return value
    whole = REFERENCE.fullmatch(value)
    if whole is not None:
        found = _lookup(context, _split_reference(whole.group(1)))
        if budget is not None:
            budget.spend(budget.size_of(found))
        return found

    def render(match: re.Match[str]) -> str:
        found = _lookup(context, _split_reference(match.group(1)))
        text = "" if found is None else found if isinstance(found, str) else None
        if text is None:
            if budget is not None:
                budget.spend(budget.size_of(found))  # before serialising it again
            text = json.dumps(found, separators=(",", ":"))
        elif budget is not None:
            budget.spend(len(text))
        return text

    if budget is not None:
        budget.spend(len(value) - sum(len(m.group(0)) for m in REFERENCE.finditer(value)))
    return REFERENCE.sub(render, value)
