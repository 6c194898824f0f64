"""The layout's rules, checked: imports point down the rooms of ARCHITECTURE.md, FastAPI stays at
the HTTP edge, and the SDK and the CLI load no module of the service."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "opscore"

# Rooms from the bottom up; a module may import its own room and the rooms below it.
RANKS = {
    "": 0,  # opscore/__init__.py: the version
    "config": 0,
    "errors": 0,
    "models": 0,
    "signatures": 0,  # the HMAC of events out, shared with the SDK
    "storage": 1,
    "observe": 2,
    "security": 2,
    "dispatch": 3,
    "events": 3,  # events out: published by lifecycle and workflow
    "lifecycle": 4,
    "workflow": 5,
    "container": 6,
    "api": 7,
    "http": 7,
    "serve": 8,
    "processes": 8,  # `opscore serve --processes`: serve starts it, it builds each app
}
# Rooms of one rank that must not know each other.
INDEPENDENT = {
    frozenset({"observe", "security"}),
    frozenset({"config", "errors"}),
    frozenset({"dispatch", "events"}),
}
# The SDK and the CLI import none of the service's rooms (checked by importing them below).
CLIENT_SIDE = {"client", "cli", "worker", "__main__"}
HTTP_EDGE = {"api", "http"}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path))
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Every module imported anywhere in the file (lazy imports too), as absolute names."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            # `from . import x` imports the module x
            found += [(f"{target}.{alias.name}", node.lineno) for alias in node.names]
    return found


SERVICE_MODULES = [(m, p) for m, p in _modules() if _room(m) not in CLIENT_SIDE]


@pytest.mark.parametrize("module,path", SERVICE_MODULES, ids=[m for m, _ in SERVICE_MODULES])
def test_imports_point_down_the_rooms(module: str, path: Path) -> None:
    room = _room(module)
    assert room in RANKS, f"{module}: room '{room}' is not in ARCHITECTURE.md's map"
    wrong = []
    for target, line in _imports(module, path):
        if target.split(".")[0] in ("fastapi", "starlette") and room not in HTTP_EDGE:
            wrong.append(f"line {line}: {target} (FastAPI stays in api.py and http/)")
        if not target.startswith("opscore"):
            continue
        if target != "opscore" and not target.startswith("opscore."):
            continue
        other = _room(target)
        if other not in RANKS and other not in CLIENT_SIDE:
            continue  # `from . import x` of a name that is not a module
        if other == room:
            continue
        if other in CLIENT_SIDE:
            wrong.append(f"line {line}: {target} (the service never imports the SDK or CLI)")
        elif RANKS[other] > RANKS[room]:
            wrong.append(f"line {line}: {target} (an upward import, {room} -> {other})")
        elif RANKS[other] == RANKS[room] and frozenset({room, other}) in INDEPENDENT:
            wrong.append(f"line {line}: {target} ({room} and {other} are independent)")
    assert not wrong, f"{module}:\n" + "\n".join(wrong)


def test_sdk_and_cli_import_no_service_module_and_not_fastapi() -> None:
    code = (
        "import json, sys\n"
        "import opscore.client, opscore.cli, opscore.worker\n"
        "from opscore.client import OpsCoreClient, AsyncOpsCoreClient\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(out.stdout)
    ours = sorted(m for m in loaded if m == "opscore" or m.startswith("opscore."))
    allowed = {
        "opscore",
        "opscore.client",
        "opscore.cli",
        "opscore.worker",
        "opscore.errors",
        "opscore.signatures",
    }
    client_side = ("opscore.models", "opscore.cli.", "opscore.client.")
    service = {m for m in ours if m not in allowed and not m.startswith(client_side)}
    assert not service, f"service modules loaded by the SDK/CLI: {service}"
    for heavy in ("fastapi", "starlette", "uvicorn", "redis", "aiohttp", "prometheus_client"):
        assert heavy not in loaded, f"importing the SDK/CLI loaded {heavy}"


def test_no_module_is_past_the_size_budget() -> None:
    """Split by responsibility before a module passes ~400 lines (ARCHITECTURE.md): the
    service's, the SDK's and the CLI's alike."""
    over = {m: n for m, p in _modules() if (n := len(p.read_text().splitlines())) > 400}
    assert not over, f"modules past their budget: {over}"


def test_no_class_is_past_the_size_budget() -> None:
    """A class past ~300 lines does more than one thing (ARCHITECTURE.md)."""
    over = {}
    for module, path in _modules():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > 300:
                    over[f"{module}.{node.name}"] = size
    assert not over, f"classes past their budget: {over}"


def test_the_package_ships_type_information() -> None:
    assert (PACKAGE / "py.typed").is_file()


def test_the_sdk_installs_without_the_service() -> None:
    """`pip install opscore` is the SDK, the CLI and the worker; the service is the `server`
    extra. What the client side imports must come from the base dependencies alone."""
    import tomllib

    project = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]
    base = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    assert base == {"pydantic", "httpx", "typer", "rich", "sniffio"}
    assert "fastapi>=0.115,<1" in project["optional-dependencies"]["server"]
    code = (
        "import json, sys\n"
        "before = set(sys.modules)\n"
        "import opscore.client, opscore.cli, opscore.worker\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in set(sys.modules) - before})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    third_party = {
        m
        for m in json.loads(out.stdout)
        if m not in sys.stdlib_module_names and not m.startswith("_sysconfigdata")
    }
    # the base dependencies and what they bring (pydantic-core, click, pygments...)
    allowed = {
        "opscore",
        "pydantic",
        "pydantic_core",
        "annotated_types",
        "typing_extensions",
        "typing_inspection",
        "httpx",
        "httpcore",
        "h11",
        "anyio",
        "sniffio",
        "idna",
        "certifi",
        "typer",
        "click",
        "shellingham",
        "rich",
        "pygments",
        "markdown_it",
        "mdurl",
        "annotated_doc",
    }
    assert third_party <= allowed, (
        f"the client side needs more than its base: {third_party - allowed}"
    )
