"""A2A agents: registered by their card, sent tasks with SendMessage, followed by push
notification or GetTask polling, given input when they ask for it, cancelled with CancelTask.
The agent is a2a-sdk's own server running its sample executor on loopback (tests/a2a_agent.py);
the whole flows run on every store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from opscore.api import create_app

from .a2a_agent import A2AAgent
from .conftest import STORES, make_settings, store_url
from .servers import KEY, ServerThread, wait_for
from .storage_servers import free_port
from .workflow_helpers import by_step, create, run, settle, task, template


@pytest.fixture
def a2a_agents() -> Iterator[Any]:
    started: list[A2AAgent] = []

    def start(**options: Any) -> A2AAgent:
        agent = A2AAgent(**options).start()
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


def _opscore(url: str, **overrides: Any) -> tuple[ServerThread, httpx.Client]:
    port = free_port()
    settings = make_settings(
        storage_url=url,
        public_url=f"http://127.0.0.1:{port}",
        a2a_poll_seconds=0.2,
        **overrides,
    )
    server = ServerThread(create_app(settings), port=port).start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=15
    )
    return server, client


@pytest.fixture(params=STORES)
def a2a_ops(request: Any, tmp_path: Any) -> Iterator[Any]:
    """Ops-Core on each store, with a public URL the agents can push to."""
    started: list[tuple[ServerThread, httpx.Client]] = []

    def start(**overrides: Any) -> httpx.Client:
        server, client = _opscore(store_url(request, request.param, tmp_path), **overrides)
        started.append((server, client))
        return client

    yield start
    for server, client in reversed(started):
        client.close()
        server.stop()


@pytest.fixture
def opscore() -> Iterator[httpx.Client]:
    server, client = _opscore("memory://")
    yield client
    client.close()
    server.stop()


def register(client: httpx.Client, agent: A2AAgent, **extra: Any) -> dict[str, Any]:
    response = client.post("/v1/opscore/agents/a2a", json={"cardUrl": agent.card_url, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def hello(step: str = "a", **parameters: Any) -> dict[str, Any]:
    return task(step, agentCapability="hello", parameters=parameters, timeoutSeconds=30)


# --- registration ---------------------------------------------------------------------------


def test_an_agent_registers_by_its_card_and_its_skills_become_capabilities(
    opscore: httpx.Client, a2a_agents: Any
) -> None:
    agent = a2a_agents()
    registered = register(opscore, agent)
    assert registered["agentId"] == "sample-agent"
    assert registered["delivery"] == "a2a"
    assert registered["capabilities"] == ["hello"]
    assert registered["agentName"] == "Sample Agent" and registered["version"] == "1.0.0"
    card = registered["a2a"]
    assert card["url"] == f"{agent.url}/a2a/jsonrpc"
    assert card["protocolBinding"] == "JSONRPC" and card["protocolVersion"] == "1.0"
    assert card["pushNotifications"] is False and card["skills"] == ["hello"]
    assert card["card"]["name"] == "Sample Agent"

    # the base URL finds the well-known card; registering again refreshes (200)
    again = opscore.post(
        "/v1/opscore/agents/a2a",
        json={"cardUrl": agent.url, "capabilities": ["greet"], "maxConcurrency": 2},
    )
    assert again.status_code == 200, again.text
    assert again.json()["capabilities"] == ["hello", "greet"]
    assert again.json()["maxConcurrency"] == 2


def test_a_card_that_cannot_be_used_is_a_clear_422(opscore: httpx.Client, a2a_agents: Any) -> None:
    agent = a2a_agents()
    missing = opscore.post(
        "/v1/opscore/agents/a2a", json={"cardUrl": f"{agent.url}/nothing/card.json"}
    )
    assert missing.status_code == 422
    assert missing.json()["error"]["code"] == "A2A_CARD_UNREADABLE"
    assert "answered 404" in missing.json()["error"]["message"]

    closed = opscore.post(
        "/v1/opscore/agents/a2a", json={"cardUrl": f"http://127.0.0.1:{free_port()}"}
    )
    assert closed.status_code == 422 and "cannot read" in closed.json()["error"]["message"]

    # JSON, but not a card: Ops-Core's own OpenAPI document
    openapi = opscore.post(
        "/v1/opscore/agents/a2a",
        json={"cardUrl": str(opscore.base_url).rstrip("/") + "/openapi.json"},
    )
    assert openapi.status_code == 422
    assert "offers no interface Ops-Core speaks" in openapi.json()["error"]["message"]

    for invalid in ("http://127.0.0.1:99999999", "http://:80/card.json", "http://[::1/x"):
        refused = opscore.post("/v1/opscore/agents/a2a", json={"cardUrl": invalid})
        assert refused.status_code == 422, (invalid, refused.text)

    bad = opscore.post("/v1/opscore/agents/a2a", json={"cardUrl": "ftp://x", "extra": 1})
    assert bad.status_code == 422

    plain = opscore.post(
        "/v1/opscore/agents", json={"agentName": "x", "delivery": "a2a", "agentId": "x"}
    )
    assert plain.status_code == 422 and "/agents/a2a" in plain.text


def test_another_agent_under_the_same_id_is_a_conflict(
    opscore: httpx.Client, a2a_agents: Any
) -> None:
    opscore.post(
        "/v1/opscore/agents",
        json={"agentId": "sample-agent", "agentName": "push one", "capabilities": ["x"]},
    ).raise_for_status()
    taken = opscore.post("/v1/opscore/agents/a2a", json={"cardUrl": a2a_agents().card_url})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "AGENT_EXISTS"


# --- whole flows on every store -------------------------------------------------------------


def test_an_a2a_agent_runs_a_task_followed_by_polling(a2a_ops: Any, a2a_agents: Any) -> None:
    """The sample agent as it ships: no push notifications, so GetTask tells the outcome."""
    client = a2a_ops()
    agent = a2a_agents()
    register(client, agent)
    create(client, template("greet", hello("a", text="hi there")))
    detail = settle(client, run(client, "greet"), timeout=30)

    assert detail["status"] == "completed", detail
    done = by_step(detail)["a"]
    assert done["result"]["text"] == "Hello World! You said: 'hi there'. Thanks for your message!"
    assert done["result"]["artifacts"][0]["name"] == "response"
    ref = done["a2a"]
    assert ref["state"] == "completed" and ref["pushed"] is False and ref["taskId"]
    assert done["result"]["a2aTaskId"] == ref["taskId"]
    # what the agent got: the parameters as text and as data, Ops-Core's ids in the metadata
    [message] = agent.executor.messages
    assert message["metadata"]["opscoreTaskId"] == done["taskId"]
    assert message["metadata"]["opscoreSessionId"] == detail["sessionId"]
    assert message["parts"][0]["text"] == "hi there"
    assert message["parts"][1]["data"] == {"text": "hi there"}
    assert agent.versions and set(agent.versions) == {"1.0"}  # A2A-Version on every call


def test_push_notifications_tell_the_outcome(a2a_ops: Any, a2a_agents: Any) -> None:
    """An agent that pushes: Ops-Core asks for notifications with a token, and does not need
    to poll (its safety poll is set far beyond the test)."""
    client = a2a_ops(a2a_push_poll_seconds=600)
    agent = a2a_agents(push=True)
    register(client, agent)
    create(
        client,
        template(
            "pushed",
            hello("a", mode="data"),
            hello("b", text="${tasks.a.result.data.answer}") | {"dependsOn": ["a"]},
        ),
    )
    detail = settle(client, run(client, "pushed"), timeout=30)

    assert detail["status"] == "completed", detail
    steps = by_step(detail)
    assert steps["a"]["a2a"]["pushed"] is True
    assert steps["a"]["result"]["data"]["answer"] == 42
    assert steps["b"]["result"]["text"].startswith("Hello World! You said: '42'")


def test_failed_and_rejected_tasks_fail_with_the_agents_words(
    a2a_ops: Any, a2a_agents: Any
) -> None:
    client = a2a_ops()
    register(client, a2a_agents())
    create(
        client,
        template(
            "fails",
            hello("a", mode="fail", seconds=0.05)
            | {"retry": {"maxAttempts": 2, "backoffSeconds": 0.05}},
        ),
    )
    create(
        client,
        template(
            "rejects", hello("a", mode="reject", seconds=0.05) | {"retry": {"maxAttempts": 1}}
        ),
    )

    failed = settle(client, run(client, "fails"), timeout=30)
    assert failed["status"] == "failed"
    step = by_step(failed)["a"]
    assert step["attempts"] == 2  # a failed A2A task is retried as a new task
    assert step["error"] == "the A2A agent says failed: could not do it"

    rejected = settle(client, run(client, "rejects"), timeout=30)
    assert by_step(rejected)["a"]["error"] == "the A2A agent says rejected: not my kind of task"


def test_an_answer_larger_than_ops_core_reads_fails_the_attempt_unread(
    a2a_ops: Any, a2a_agents: Any
) -> None:
    """A 5 MiB artifact: GetTask's answer is cut at 4 MiB (MAX_ANSWER_BYTES, as for pushed
    agents), the attempt fails saying why, and nothing of it is kept."""
    client = a2a_ops()
    register(client, a2a_agents())
    create(
        client,
        template("huge", hello("a", mode="huge", seconds=0.05) | {"retry": {"maxAttempts": 1}}),
    )
    failed = settle(client, run(client, "huge"), timeout=30)
    assert failed["status"] == "failed"
    step = by_step(failed)["a"]
    assert step["error"] == "A2A: the answer is larger than 4194304 bytes"
    assert step["result"] is None


def test_a_retry_follows_its_own_remote_task(a2a_ops: Any, a2a_agents: Any) -> None:
    """Each attempt is a new A2A task: the retry's outcome is read from the retry's task, not
    from the failed one's."""
    client = a2a_ops()
    agent = a2a_agents()
    register(client, agent)
    create(
        client,
        template(
            "flaky",
            hello("a", mode="flaky", seconds=0.05)
            | {"retry": {"maxAttempts": 2, "backoffSeconds": 0.05}},
        ),
    )
    detail = settle(client, run(client, "flaky"), timeout=30)
    assert detail["status"] == "completed", detail
    step = by_step(detail)["a"]
    assert step["attempts"] == 2 and step["history"][0]["outcome"] == "agent_error"
    assert step["result"]["text"].startswith("Hello World!")
    assert step["result"]["a2aTaskId"] == step["a2a"]["taskId"]
    first, second = agent.executor.task_ids
    assert first != second and step["a2a"]["taskId"] == second


def test_input_required_waits_for_a_signal_and_the_payload_goes_to_the_agent(
    a2a_ops: Any, a2a_agents: Any
) -> None:
    client = a2a_ops()
    agent = a2a_agents()
    register(client, agent)
    create(client, template("asks", hello("where", mode="input", seconds=0.05)))
    sid = run(client, "asks")

    def waiting() -> dict[str, Any] | None:
        items = client.get("/v1/opscore/waiting", params={"sessionId": sid}).json()["items"]
        return items[0] if items else None

    step = wait_for(waiting, timeout=30)
    assert step["kind"] == "agent" and step["signal"] == "where"
    assert step["prompt"] == "Which city?"
    task_id = step["taskId"]
    assert client.get(f"/v1/opscore/tasks/{task_id}").json()["a2a"]["state"] == "input_required"

    sent = client.post(
        f"/v1/opscore/sessions/{sid}/signals/where", json={"payload": {"city": "Oslo"}}
    )
    assert sent.status_code == 200, sent.text
    detail = settle(client, sid, timeout=30)
    assert detail["status"] == "completed", detail
    done = by_step(detail)["where"]
    assert done["result"]["text"] == "Got it: Oslo"
    assert done["decision"]["payload"] == {"city": "Oslo"}
    follow_up = agent.executor.messages[-1]
    assert follow_up["taskId"] == done["a2a"]["taskId"]
    assert follow_up["parts"][1]["data"] == {"city": "Oslo"}


def test_a_cancelled_run_cancels_the_a2a_task(a2a_ops: Any, a2a_agents: Any) -> None:
    client = a2a_ops()
    agent = a2a_agents()
    register(client, agent)
    create(client, template("long", hello("a", seconds=60)))
    sid = run(client, "long")

    def remote() -> dict[str, Any] | None:
        found = client.get(f"/v1/opscore/sessions/{sid}").json()["tasks"][0]
        return found if found.get("a2a") else None

    working = wait_for(remote, timeout=30)
    assert client.post(f"/v1/opscore/sessions/{sid}/cancel").status_code == 200
    wait_for(lambda: agent.executor.cancelled, timeout=15)
    assert agent.executor.cancelled == [working["a2a"]["taskId"]]

    def delivered() -> dict[str, Any] | None:
        found = client.get(f"/v1/opscore/tasks/{working['taskId']}").json()
        return found if found["cancelDelivery"] else None

    cancelled = wait_for(delivered, timeout=15)
    assert cancelled["status"] == "cancelled"
    assert cancelled["cancelDelivery"] == "acknowledged"
    assert cancelled["cancelAcknowledgedAt"] is not None


def test_an_attempt_that_times_out_cancels_its_remote_task(a2a_ops: Any, a2a_agents: Any) -> None:
    client = a2a_ops()
    agent = a2a_agents()
    register(client, agent)
    create(
        client,
        template(
            "slowpoke", hello("a", seconds=60) | {"timeoutSeconds": 1, "retry": {"maxAttempts": 1}}
        ),
    )
    detail = settle(client, run(client, "slowpoke"), timeout=30)
    assert detail["status"] == "failed"
    assert by_step(detail)["a"]["history"][0]["outcome"] == "timeout"
    wait_for(lambda: agent.executor.cancelled, timeout=15)
    assert agent.executor.cancelled == agent.executor.task_ids  # the one remote task


# --- the notification endpoint ---------------------------------------------------------------


def test_notifications_need_the_tasks_token(opscore: httpx.Client, a2a_agents: Any) -> None:
    agent = a2a_agents()
    register(opscore, agent)
    create(opscore, template("slow", hello("a", seconds=60)))
    sid = run(opscore, "slow")
    working = wait_for(
        lambda: (
            (t := opscore.get(f"/v1/opscore/sessions/{sid}").json()["tasks"][0]).get("a2a") and t
        ),
        timeout=30,
    )
    url = f"/v1/opscore/internal/a2a/tasks/{working['taskId']}/notify"
    update = {
        "statusUpdate": {
            "taskId": working["a2a"]["taskId"],
            "status": {"state": "TASK_STATE_FAILED"},
        }
    }
    anonymous = httpx.Client(base_url=str(opscore.base_url), timeout=10)
    try:
        none = anonymous.post(url, json=update)
        assert none.status_code == 401 and none.json()["error"]["code"] == "A2A_TOKEN_MISMATCH"
        wrong = anonymous.post(url, json=update, headers={"X-A2A-Notification-Token": "guess"})
        assert wrong.status_code == 401
        unknown = anonymous.post(
            "/v1/opscore/internal/a2a/tasks/no-such-task/notify",
            json=update,
            headers={"X-A2A-Notification-Token": "guess"},
        )
        assert unknown.status_code == 404
        garbage = anonymous.post(
            url, content=b"{not json", headers={"X-A2A-Notification-Token": "x"}
        )
        assert garbage.status_code == 422
    finally:
        anonymous.close()
    # nothing of that reached the task
    assert opscore.get(f"/v1/opscore/tasks/{working['taskId']}").json()["status"] in (
        "dispatched",
        "running",
    )
    opscore.post(f"/v1/opscore/sessions/{sid}/cancel").raise_for_status()


# --- the SDK and the CLI ---------------------------------------------------------------------


def test_the_sdk_and_the_cli_register_a2a_agents(opscore: httpx.Client, a2a_agents: Any) -> None:
    import json

    from typer.testing import CliRunner

    from opscore.cli import app
    from opscore.client import OpsCoreClient

    agent = a2a_agents()
    url = str(opscore.base_url).rstrip("/")
    with OpsCoreClient(url, api_key=KEY) as sdk:
        registered = sdk.register_a2a_agent(agent.url, agent_id="hello-sdk", capabilities=["x"])
    assert registered.delivery == "a2a" and registered.capabilities == ["hello", "x"]
    assert registered.a2a is not None and registered.a2a.protocol_binding == "JSONRPC"

    env = {"OPSCORE_API_URL": url, "OPSCORE_API_KEY": KEY}
    result = CliRunner().invoke(
        app, ["agents", "register-a2a", agent.card_url, "--id", "hello-cli"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "Registered A2A agent hello-cli (Sample Agent) via JSONRPC 1.0" in result.output
    shown = CliRunner().invoke(
        app, ["--json", "agents", "register-a2a", agent.card_url, "--id", "hello-cli"], env=env
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["a2a"]["skills"] == ["hello"]
    broken = CliRunner().invoke(
        app, ["--json", "agents", "register-a2a", f"{agent.url}/missing.json"], env=env
    )
    assert broken.exit_code != 0
