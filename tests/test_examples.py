"""The shipped examples work: the example agent runs a YAML and a JSON workflow end to end."""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import httpx
import pytest

from opscore.client import OpsCoreClient

from .conftest import KEY
from .servers import ServerThread, wait_for

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load_agent_module():
    spec = importlib.util.spec_from_file_location("example_agent", EXAMPLES / "agent.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("background", [False, True], ids=["answer", "background"])
def test_example_agents_run_the_sample_workflows(server, background: bool) -> None:
    agent_module = _load_agent_module()
    agents = []
    for agent_id, caps in (("fetcher-1", ["fetch"]), ("writer-1", ["summarize", "publish"])):
        port = _free_port()
        app = agent_module.make_agent(
            agent_id,
            caps,
            port,
            opscore_url=server.url,
            api_key=KEY,
            work_seconds=0.01,
            background=background,
        )
        agents.append(ServerThread(app, port=port).start())
    try:
        with OpsCoreClient(server.url, KEY) as ops:
            wait_for(lambda: ops.list_agents(state="idle").total == 2)
            ops.create_workflow((EXAMPLES / "workflows" / "digest.yaml").read_text())
            ops.create_workflow((EXAMPLES / "workflows" / "research-digest.json").read_text())
            finished = {}
            for workflow_id in ("digest", "research-digest"):
                run = ops.run_workflow(workflow_id, {"topic": "agents"})
                done = ops.wait_for_session(run.session_id, timeout=30, poll_interval=0.05)
                assert done.status == "completed", done
                finished[workflow_id] = {t.step_id: t for t in done.tasks}
            assert finished["research-digest"]["publish"].agent_id == "writer-1"
            # each result reached the next step through ${tasks.<id>.result...}
            digest = finished["digest"]
            assert digest["summarize"].result["input"]["text"] == "fetch done by fetcher-1"
            assert digest["publish"].result["input"]["summary"] == "summarize done by writer-1"
    finally:
        for agent in agents:
            agent.stop()
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as c:
        assert c.get("/v1/opscore/agent/fetcher-1/state").json()["state"] == "offline"
