"""What A2A messages and tasks say, as JSON (``MessageToDict``): the text and data of their
parts, a task's state and status message, and the Ops-Core result a reply or a finished task
becomes. Pure functions, shared by the client (``a2a.py``), the cancellation notices
(``cancels.py``) and the workflow's reading of remote tasks (``workflow/a2a.py``)."""

from __future__ import annotations

import json
from typing import Any


def parameters_text(parameters: dict[str, Any]) -> str:
    """The message's text part: the ``text`` parameter when it is one, else the parameters as
    JSON, so an agent that reads only text (most do) still gets everything."""
    text = parameters.get("text")
    if isinstance(text, str) and text:
        return text
    if isinstance(text, int | float) and not isinstance(text, bool):
        return str(text)
    return json.dumps(parameters, ensure_ascii=False, separators=(",", ":"), default=str)


def parts_content(parts: list[dict[str, Any]]) -> tuple[list[str], list[Any]]:
    """The text and the data of A2A parts (as JSON), in order; files are named by their URL."""
    texts: list[str] = []
    data: list[Any] = []
    for part in parts:
        if "text" in part:
            texts.append(str(part["text"]))
        elif "data" in part:
            data.append(whole_numbers(part["data"]))
        elif "url" in part:
            data.append({"url": part["url"], "filename": part.get("filename")})
    return texts, data


def whole_numbers(value: Any) -> Any:
    """Protobuf's JSON values are all doubles: 42 comes back as 42.0. Whole numbers become
    ints again, so a result reads as the agent wrote it."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def a2a_state(remote: dict[str, Any]) -> str:
    """``TASK_STATE_INPUT_REQUIRED`` -> ``input_required`` (``unspecified`` when absent)."""
    state = str(remote.get("status", {}).get("state", "TASK_STATE_UNSPECIFIED"))
    return state.removeprefix("TASK_STATE_").lower()


def status_text(remote: dict[str, Any]) -> str | None:
    """The text of the remote task's status message, if it has one."""
    message = remote.get("status", {}).get("message") or {}
    texts, _ = parts_content(message.get("parts", []))
    return "\n".join(texts)[:2000] if texts else None


def _result(texts: list[str], data: list[Any], **rest: Any) -> dict[str, Any]:
    """The result's shape: text joined, the one data value (or a list of them)."""
    return {
        "text": "\n".join(texts) if texts else None,
        "data": data[0] if len(data) == 1 else (data or None),
        **rest,
    }


def reply_result(message: dict[str, Any]) -> dict[str, Any]:
    """The result of a direct reply (a ``Message`` instead of a task)."""
    texts, data = parts_content(message.get("parts", []))
    return _result(texts, data, artifacts=[])


def task_result(remote: dict[str, Any]) -> dict[str, Any]:
    """A completed A2A task as an Ops-Core result: its artifacts' text joined, their data (the
    one value, or a list), and the artifacts themselves, so later steps read
    ``${tasks.<id>.result.text}`` or ``${tasks.<id>.result.data.<key>}``. Without artifact
    text, the text is the final status message's."""
    texts: list[str] = []
    data: list[Any] = []
    artifacts = []
    for artifact in remote.get("artifacts", []):
        t, d = parts_content(artifact.get("parts", []))
        texts += t
        data += d
        artifacts.append(
            {"artifactId": artifact.get("artifactId"), "name": artifact.get("name"), "texts": t}
            | ({"data": d} if d else {})
        )
    result = _result(texts, data, artifacts=artifacts, a2aTaskId=remote.get("id"))
    if not texts:
        result["text"] = status_text(remote)
    return result
