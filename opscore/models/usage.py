"""Token usage an agent reports with a result: ``usage: {inputTokens, outputTokens, model}``.

Read leniently (camelCase as the wire speaks, snake_case as many SDKs do) and strictly at once:
anything that is not a small non-negative integer is left out rather than trusted, since it
ends up as span attributes and, later, in budgets.
"""

from __future__ import annotations

from typing import Any

_LIMIT = 10**12


def usage_from(value: Any) -> dict[str, Any] | None:
    """{"input_tokens", "output_tokens", "model"} (each only when given and sane), or None."""
    if not isinstance(value, dict):
        return None
    usage: dict[str, Any] = {}
    for wire, snake in (("inputTokens", "input_tokens"), ("outputTokens", "output_tokens")):
        count = value.get(wire, value.get(snake))
        if isinstance(count, int) and not isinstance(count, bool) and 0 <= count < _LIMIT:
            usage[snake] = count
    model = value.get("model")
    if isinstance(model, str) and 0 < len(model) <= 200:
        usage["model"] = model
    return usage or None
