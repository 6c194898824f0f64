"""Conditions on steps (``when``): CEL expressions, and what a false one does to a run.

CEL (the Common Expression Language of Kubernetes and Google's APIs) through the maintained
``common-expression-language`` package: no code of the template's author runs, evaluation has
no side effects, and it always ends. An expression sees ``input`` (the run's payload),
``tasks.<id>.result`` and ``tasks.<id>.status`` (steps that run before it), and ``session``.

Pure functions: the engine decides with them, templates validates with them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import cel

from .substitution import TemplateError

ROOTS = frozenset({"input", "tasks", "session"})
# a comprehension (map, filter, all, exists, exists_one) walks a list from the payload; two
# nested ones would walk it squared, so a condition may use one
_COMPREHENSION = re.compile(r"\.\s*(?:map|filter|all|exists|exists_one)\s*\(")
_MAX_COMPREHENSIONS = 1


class ConditionError(Exception):
    """A condition that cannot be evaluated against this run (a missing key, a type clash)."""


@lru_cache(maxsize=1024)
def compile_condition(expression: str) -> cel.Program:
    """The compiled program; TemplateError (422) when it is not valid CEL or reaches for a
    name other than input, tasks and session."""
    if len(_COMPREHENSION.findall(expression)) > _MAX_COMPREHENSIONS:
        raise TemplateError(
            f"Condition '{expression}' uses more than {_MAX_COMPREHENSIONS} comprehension "
            "(map, filter, all, exists); split it into steps"
        )
    try:
        program = cel.compile(expression)
    except ValueError as exc:
        first = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise TemplateError(f"Condition '{expression}' is not valid CEL: {first}") from None
    bound = _bound_names(expression)
    unknown = sorted(set(program.variables()) - ROOTS - bound)
    if unknown:
        raise TemplateError(
            f"Condition '{expression}' uses unknown name(s) {', '.join(unknown)}; it may read "
            "input, tasks.<id>.result, tasks.<id>.status and session"
        )
    return program


_BOUND = re.compile(r"\.\s*(?:map|filter|all|exists|exists_one)\s*\(\s*([A-Za-z_]\w*)\s*,")


def _bound_names(expression: str) -> set[str]:
    """Names a comprehension binds (``xs.map(x, ...)`` binds x)."""
    return set(_BOUND.findall(expression))


_TASK_REF = re.compile(r"\btasks\s*\.\s*([A-Za-z0-9_]+)|\btasks\s*\[\s*['\"]([^'\"]+)['\"]\s*\]")


def condition_task_refs(expression: str) -> set[str]:
    """The step ids a condition reads (``tasks.x`` or ``tasks["x-y"]``)."""
    return {a or b for a, b in _TASK_REF.findall(expression)}


def evaluate(expression: str, context: Mapping[str, Any]) -> bool:
    """The condition's value in this run; ConditionError when it cannot be evaluated or is
    not a boolean (CEL does not coerce: ``size(x)`` is not ``true``)."""
    program = compile_condition(expression)
    try:
        value = program.execute(cel.Context(dict(context)))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ConditionError(f"condition '{expression}' could not be evaluated: {exc}") from None
    if not isinstance(value, bool):
        raise ConditionError(
            f"condition '{expression}' gave {type(value).__name__} {value!r}, not true or false"
        )
    return value


@dataclass(frozen=True, slots=True)
class Gate:
    """What to do with a pending step whose prerequisites have all ended."""

    action: Literal["start", "skip", "fail"]
    reason: str = ""


def gate(
    when: str | None,
    depends_on: list[str],
    skipped: set[str],
    context: Mapping[str, Any],
) -> Gate:
    """Start, skip or fail a step once its prerequisites are done.

    A step without a condition is skipped when one of its prerequisites was skipped: a branch
    that did not run skips everything below it. A step with a condition decides for itself,
    and can read the prerequisites' statuses: that is how a join after an if/else runs
    (``when: tasks.a.status == "completed" || tasks.b.status == "completed"``).
    """
    if when is None:
        gone = sorted(d for d in depends_on if d in skipped)
        if gone:
            return Gate("skip", f"prerequisite '{gone[0]}' was skipped")
        return Gate("start")
    try:
        if evaluate(when, context):
            return Gate("start")
    except ConditionError as exc:
        return Gate("fail", str(exc))
    return Gate("skip", f"condition is false: {when}")
