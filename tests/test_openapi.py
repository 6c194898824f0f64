"""The OpenAPI document as developers read it in /docs: every operation has a summary, a tag
with a description, and an example (of its body, a parameter or its answer)."""

from __future__ import annotations

from typing import Any

import pytest

from opscore.api import create_app

from .conftest import make_settings


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(make_settings()).openapi()


def operations(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", op)
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


def has_example(
    node: Any, components: dict[str, Any], seen: frozenset[str], depth: int = 0
) -> bool:
    """An example anywhere in the node, following $refs into the components (once each)."""
    if depth > 12:
        return False
    if isinstance(node, list):
        return any(has_example(n, components, seen, depth + 1) for n in node)
    if not isinstance(node, dict):
        return False
    if "example" in node or "examples" in node:
        return True
    ref = node.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return name not in seen and has_example(
            components.get(name, {}), components, seen | {name}, depth + 1
        )
    return any(has_example(v, components, seen, depth + 1) for v in node.values())


def test_every_operation_has_a_summary_and_an_example(spec) -> None:
    components = spec.get("components", {}).get("schemas", {})
    no_summary = [name for name, op in operations(spec) if not op.get("summary")]
    no_example = []
    for name, op in operations(spec):
        parts: list[Any] = [op.get("requestBody", {}), op.get("parameters", [])]
        parts += [r for code, r in op.get("responses", {}).items() if str(code).startswith("2")]
        if not any(has_example(p, components, frozenset()) for p in parts):
            no_example.append(name)
    assert not no_summary, f"operations without a summary: {no_summary}"
    assert not no_example, f"operations without an example: {no_example}"


def test_every_tag_is_described(spec) -> None:
    described = {t["name"] for t in spec.get("tags", []) if t.get("description")}
    used = {tag for _, op in operations(spec) for tag in op.get("tags", [])}
    assert used <= described, f"tags without a description: {sorted(used - described)}"
