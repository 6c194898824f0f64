"""Templates over the API: JSON and YAML, versions, validation that names the task."""

from __future__ import annotations

import json

import httpx
import pytest

from opscore.api import create_app
from opscore.errors import ConfigError

from .conftest import KEY, contract, make_settings
from .servers import ServerThread
from .workflow_helpers import create, task, template

YAML = """
id: yaml-flow
name: From YAML
version: 2
tasks:
  - taskId: a
    agentCapability: work
    parameters: {x: "${input.x}"}
    nextTaskId: b
  - taskId: b
    agentCapability: work
"""


def test_prototype_format_loads_unchanged(client: httpx.Client) -> None:
    body = contract("workflow_prototype_format.json")
    created = client.post("/v1/opscore/workflows", json=body)
    assert created.status_code == 201, created.text
    stored = client.get("/v1/opscore/workflows/research-digest").json()
    assert stored["name"] == "Research digest" and stored["version"] == "1.0"
    assert [t["taskId"] for t in stored["tasks"]] == ["fetch", "summarize", "publish"]
    assert stored["tasks"][0]["nextTaskId"] == "summarize" and stored["tasks"][0]["parameters"] == {
        "topic": "agents"
    }


def test_yaml_body_creates_a_template(client: httpx.Client) -> None:
    response = client.post(
        "/v1/opscore/workflows", content=YAML, headers={"Content-Type": "application/yaml"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["version"] == "2"
    assert client.get("/v1/opscore/workflows").json()["items"][0]["id"] == "yaml-flow"


def test_versions_are_immutable_and_listed_newest(client: httpx.Client) -> None:
    create(client, template("v", task("a")))
    assert client.post("/v1/opscore/workflows", json=template("v", task("a"))).status_code == 200
    clash = client.post("/v1/opscore/workflows", json=template("v", task("b")))
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "WORKFLOW_VERSION_EXISTS"
    create(client, template("v", task("b"), version="2.0"))
    assert client.get("/v1/opscore/workflows/v").json()["version"] == "2.0"
    assert (
        client.get("/v1/opscore/workflows/v", params={"version": "1.0"}).json()["tasks"][0][
            "taskId"
        ]
        == "a"
    )
    assert client.delete("/v1/opscore/workflows/v", params={"version": "2.0"}).status_code == 204
    assert client.get("/v1/opscore/workflows/v").json()["version"] == "1.0"
    assert client.delete("/v1/opscore/workflows/v").status_code == 204
    assert client.get("/v1/opscore/workflows/v").status_code == 404


@pytest.mark.parametrize(
    ("tasks", "fragment"),
    [
        ([task("a", nextTaskId="ghost")], "unknown task 'ghost'"),
        ([task("a", dependsOn=["b"]), task("b", dependsOn=["a"])], "cycle"),
        ([task("a"), task("b", dependsOn=["c"]), task("c", dependsOn=["b"])], "b, c"),
        ([task("a"), task("a")], "defined twice"),
        ([task("a", parameters={"x": "${tasks.b.result}"}), task("b")], "does not run before it"),
        ([task("a", parameters={"x": "${tasks.zz.result}"})], "unknown task 'zz'"),
        ([task("a", parameters={"x": "${__import__('os')}"})], "must start with input."),
        ([task("a", parameters={"x": "${env.HOME}"})], "must start with input."),
        ([task("a", fallbackTaskId="a")], "names itself"),
        ([task("a", fallbackTaskId="b"), task("b", dependsOn=["a"])], "must stand alone"),
        ([task("a", target="agent")], "no agentId"),
    ],
)
def test_invalid_templates_are_rejected_naming_the_task(
    client: httpx.Client, tasks, fragment: str
) -> None:
    response = client.post("/v1/opscore/workflows", json=template("bad", *tasks))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "INVALID_TEMPLATE"
    assert fragment in response.json()["detail"]


def test_schema_errors_in_templates_are_422_with_locations(client: httpx.Client) -> None:
    response = client.post("/v1/opscore/workflows", json={"id": "x", "tasks": [{"taskId": 5}]})
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["loc"][:2] == ["tasks", 0]
    empty = client.post(
        "/v1/opscore/workflows", content=b"", headers={"Content-Type": "application/json"}
    )
    assert empty.status_code == 400
    garbage = client.post(
        "/v1/opscore/workflows", content=b"{: : :", headers={"Content-Type": "application/yaml"}
    )
    assert garbage.status_code == 400 and garbage.json()["error"]["code"] == "INVALID_TEMPLATE"
    scalar = client.post(
        "/v1/opscore/workflows", content=b"just text", headers={"Content-Type": "text/plain"}
    )
    assert scalar.status_code == 400


def test_templates_load_from_a_directory_at_startup(tmp_path) -> None:
    (tmp_path / "one.json").write_text(json.dumps(template("from-file", task("a"))))
    (tmp_path / "two.yaml").write_text(YAML)
    (tmp_path / "notes.txt").write_text("ignored")
    app = create_app(make_settings(workflows_dir=tmp_path))
    with (
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as c,
    ):
        ids = [t["id"] for t in c.get("/v1/opscore/workflows").json()["items"]]
        assert ids == ["from-file", "yaml-flow"]
        assert c.get("/v1/opscore/workflows/from-file").json()["source"] == "file:one.json"


def test_invalid_template_file_stops_startup(tmp_path) -> None:
    (tmp_path / "bad.json").write_text(json.dumps(template("bad", task("a", nextTaskId="zz"))))
    app = create_app(make_settings(workflows_dir=tmp_path))
    services = app.state.services
    import asyncio

    with pytest.raises(ConfigError, match="unknown task 'zz'"):
        asyncio.run(services.start())


def test_template_task_limit(server_factory) -> None:
    server = server_factory(make_settings(max_template_tasks=3))
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as c:
        big = template("big", *[task(f"t{i}") for i in range(4)])
        response = c.post("/v1/opscore/workflows", json=big)
        assert response.status_code == 422 and "limit is 3" in response.json()["detail"]


def test_a_stored_template_becomes_a_definition_and_is_checked_once_per_instance(
    monkeypatch,
) -> None:
    """Every run of a stored template asks for its definition and checks it, and the store
    hands the template back as one instance while its JSON is unchanged (storage.parsed):
    both are done once per instance. Another task limit checks it again, a copy starts
    afresh, and what was worked out is not part of equality (an identical re-post is 200)."""
    from opscore.models import WorkflowDefinition, WorkflowTemplate
    from opscore.workflow import templates as module
    from opscore.workflow.substitution import TemplateError

    orders: list[int] = []
    real = module._topological_order
    monkeypatch.setattr(module, "_topological_order", lambda *a: orders.append(1) or real(*a))
    body = template("m", task("a"), task("b", dependsOn=["a"]))
    stored = WorkflowTemplate.model_validate({**body, "createdAt": "2026-12-05T00:00:00Z"})
    definition = stored.definition()
    assert stored.definition() is definition
    module.validate_definition(definition, max_tasks=10)
    module.validate_definition(definition, max_tasks=10)
    assert len(orders) == 1
    module.validate_definition(definition, max_tasks=2)
    assert len(orders) == 2
    with pytest.raises(TemplateError, match="limit is 1"):
        module.validate_definition(definition, max_tasks=1)
    assert WorkflowDefinition.model_validate(body) == definition
    renamed = stored.model_copy(update={"name": "renamed"})
    assert renamed.definition() is not definition and renamed.definition().name == "renamed"
    assert definition.model_copy()._checked_for is None
