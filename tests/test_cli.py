"""The CLI, through Typer's CliRunner and as a real subprocess, against a live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opscore.cli import app
from opscore.client import OpsCoreClient

from .conftest import KEY
from .fakes import Behaviour
from .servers import wait_for

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "workflows"


@pytest.fixture
def env(fleet_factory):
    server, fleet = fleet_factory()
    for cap in ("fetch", "summarize", "publish"):
        fleet.add(f"{cap}-agent", Behaviour(capabilities=[cap]))
    return {"OPSCORE_API_URL": server.url, "OPSCORE_API_KEY": KEY}, fleet


def cli(env: dict, *args: str):
    return runner.invoke(app, list(args), env=env)


def test_agents_commands(env) -> None:
    env, _ = env
    result = cli(
        env,
        "agents",
        "register",
        "helper",
        "--id",
        "helper-1",
        "-c",
        "x",
        "-c",
        "y",
        "--endpoint",
        "http://127.0.0.1:9/",
    )
    assert result.exit_code == 0, result.output
    assert "Registered agent helper-1" in result.output
    listing = cli(env, "agents", "list")
    assert (
        listing.exit_code == 0 and "helper-1" in listing.output and "fetch-agent" in listing.output
    )
    shown = cli(env, "--json", "agents", "show", "helper-1")
    assert json.loads(shown.output)["capabilities"] == ["x", "y"]
    assert cli(env, "agents", "deregister", "helper-1").exit_code == 0


def test_state_commands(env) -> None:
    env, _ = env
    assert (
        cli(env, "state", "set", "fetch-agent", "active", "--details", '{"note": "hi"}').exit_code
        == 0
    )
    got = cli(env, "state", "get", "fetch-agent")
    assert got.exit_code == 0 and "active" in got.output
    beat = cli(env, "state", "heartbeat", "fetch-agent")
    assert beat.exit_code == 0 and "seen at" in beat.output
    purged = cli(env, "purge", "--keep", "1000")
    assert purged.exit_code == 0 and "Removed 0 finished runs" in purged.output
    history = cli(env, "--json", "state", "history", "fetch-agent")
    assert [r["state"] for r in json.loads(history.output)["items"]] == ["active", "idle"]


def test_workflow_run_wait_and_sessions(env) -> None:
    env, _ = env
    created = cli(env, "workflows", "create", str(EXAMPLES / "digest.yaml"))
    assert created.exit_code == 0 and "Stored workflow digest" in created.output
    assert "digest" in cli(env, "workflows", "list").output
    assert "summarize" in cli(env, "workflows", "show", "digest").output
    ran = cli(env, "--json", "run", "digest", "--payload", '{"topic": "agents"}', "--wait")
    assert ran.exit_code == 0, ran.output
    detail = json.loads(ran.output)
    assert detail["status"] == "completed" and len(detail["tasks"]) == 3
    sessions = cli(env, "sessions", "list", "--status", "completed")
    assert detail["sessionId"] in sessions.output
    shown = cli(env, "sessions", "show", detail["sessionId"])
    assert shown.exit_code == 0 and "publish" in shown.output
    task_id = detail["tasks"][0]["taskId"]
    assert "completed" in cli(env, "tasks", "show", task_id).output
    assert cli(env, "dead-letters", "list").exit_code == 0


def test_failed_run_with_wait_exits_4(env) -> None:
    env, fleet = env
    fleet.behaviours["fetch-agent"].kind = "fail"
    fleet.behaviours["fetch-agent"].failures = 99
    spec = EXAMPLES.parent / "workflows" / "digest.yaml"
    assert cli(env, "workflows", "create", str(spec)).exit_code == 0
    cli(env, "workflows", "create", str(spec))
    result = cli(env, "run", "digest", "--wait", "--wait-timeout", "30")
    assert result.exit_code == 4


def test_errors_are_one_line_with_stable_exit_codes(env) -> None:
    env, _ = env
    missing = cli(env, "agents", "show", "ghost")
    assert missing.exit_code == 1
    assert "404 AGENT_NOT_FOUND" in missing.output and "Traceback" not in missing.output
    bad_json = cli(env, "state", "set", "fetch-agent", "idle", "--details", "{oops")
    assert bad_json.exit_code == 2
    unreachable = cli({**env, "OPSCORE_API_URL": "http://127.0.0.1:9"}, "agents", "list")
    assert unreachable.exit_code == 3 and "Cannot reach" in unreachable.output
    wrong_key = cli({**env, "OPSCORE_API_KEY": "nope"}, "agents", "list")
    assert wrong_key.exit_code == 1 and "INVALID_API_KEY" in wrong_key.output


def test_logs_command_filters(env) -> None:
    env, _ = env
    cli(env, "state", "set", "fetch-agent", "active")
    result = cli(env, "--json", "logs", "--agent", "fetch-agent", "--limit", "10")
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.output.splitlines() if line.strip()]
    assert records and all(r["agentId"] == "fetch-agent" for r in records)


def test_every_command_has_help_with_an_example() -> None:
    for args in (
        ["agents", "register"],
        ["state", "set"],
        ["workflows", "create"],
        ["run"],
        ["sessions", "list"],
        ["logs"],
        ["dead-letters", "redrive"],
        ["waiting"],
        ["approve"],
        ["reject"],
        ["signal"],
        ["schedules", "create"],
        ["subscriptions", "create"],
        ["subscriptions", "deliveries"],
        ["budgets", "set"],
        ["usage"],
        ["limits", "set"],
        ["agents", "register-a2a"],
    ):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Example" in result.output, args
        # a plain flag (--wait, --help) takes no value: no "<bool>" beside it
        assert "<bool>" not in result.output, args


def test_real_subprocess_console_script(env) -> None:
    env, _ = env
    result = subprocess.run(
        [sys.executable, "-m", "opscore", "--json", "agents", "list"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["total"] == 3


def test_an_approval_run_end_to_end_from_the_cli(env) -> None:
    env, _ = env
    spec = EXAMPLES / "reviewed-digest.yaml"
    assert cli(env, "workflows", "create", str(spec)).exit_code == 0
    ran = cli(env, "--json", "run", "reviewed-digest", "--payload", '{"topic": "agents"}')
    session_id = json.loads(ran.output)["sessionId"]

    def listed() -> list:
        result = cli(env, "--json", "waiting", "--kind", "approval")
        return json.loads(result.output)["items"]

    items = wait_for(listed, timeout=20)
    assert items[0]["prompt"] == "Publish this summary?" and items[0]["sessionId"] == session_id
    table = cli(env, "waiting")
    assert table.exit_code == 0 and items[0]["taskId"] in table.output
    approved = cli(
        env, "approve", items[0]["taskId"], "--comment", "ok", "--payload", '{"channel": "#x"}'
    )
    assert approved.exit_code == 0 and "Approved" in approved.output, approved.output

    def finished() -> dict | None:
        detail = json.loads(cli(env, "--json", "sessions", "show", session_id).output)
        return detail if detail["status"] != "running" else None

    detail = wait_for(finished, timeout=20)
    assert detail["status"] == "completed"
    publish = next(t for t in detail["tasks"] if t["stepId"] == "publish")
    assert publish["resolvedParameters"]["channel"] == "#x"
    again = cli(env, "reject", items[0]["taskId"])
    assert again.exit_code == 1 and "TASK_NOT_WAITING" in again.output
    no_one = cli(env, "signal", session_id, "paid")
    assert no_one.exit_code == 1 and "SIGNAL_NOT_AWAITED" in no_one.output
    bad = cli(env, "approve", items[0]["taskId"], "--payload", "[1]")
    assert bad.exit_code == 2


def test_a_trusted_topic_skips_the_review(env) -> None:
    env, _ = env
    assert cli(env, "workflows", "create", str(EXAMPLES / "reviewed-digest.yaml")).exit_code == 0
    ran = cli(
        env,
        "--json",
        "run",
        "reviewed-digest",
        "--payload",
        '{"topic": "a", "trusted": true}',
        "--wait",
    )
    assert ran.exit_code == 0, ran.output
    steps = {t["stepId"]: t["status"] for t in json.loads(ran.output)["tasks"]}
    assert steps == {
        "fetch": "completed",
        "summarize": "completed",
        "review": "skipped",
        "publish": "completed",
    }


def test_schedules_from_the_cli(env) -> None:
    env, _ = env
    assert cli(env, "workflows", "create", str(EXAMPLES / "digest.yaml")).exit_code == 0
    created = cli(
        env,
        "schedules",
        "create",
        "digest",
        "--cron",
        "0 9 * * mon-fri",
        "--tz",
        "Europe/Paris",
        "--id",
        "weekdays",
        "--payload",
        '{"topic": "agents"}',
    )
    assert created.exit_code == 0, created.output
    assert "At 09:00 on Monday through Friday" in created.output
    listed = cli(env, "schedules", "list")
    assert "weekdays" in listed.output and "0 9 * * mon-fri" in listed.output
    assert "paused" in cli(env, "schedules", "pause", "weekdays").output
    assert "next" in cli(env, "schedules", "resume", "weekdays").output
    changed = cli(env, "--json", "schedules", "update", "weekdays", "--every", "3600")
    assert json.loads(changed.output)["intervalSeconds"] == 3600
    triggered = cli(env, "--json", "schedules", "trigger", "weekdays")
    assert triggered.exit_code == 0 and json.loads(triggered.output)["sessionId"]
    bad = cli(env, "schedules", "create", "digest", "--cron", "61 * * * *")
    assert bad.exit_code == 1 and "INVALID_SCHEDULE" in bad.output
    assert cli(env, "schedules", "delete", "weekdays").exit_code == 0
    assert cli(env, "schedules", "show", "weekdays").exit_code == 1


def test_subscriptions_from_the_cli(env) -> None:
    env, _ = env
    refused = cli(env, "subscriptions", "create", "http://127.0.0.1:9/x", "-e", "run.failed")
    assert refused.exit_code == 1 and "EVENT_TARGET_REFUSED" in refused.output
    created = cli(
        env,
        "--json",
        "subscriptions",
        "create",
        "https://93.184.215.14/hook",
        "-e",
        "run.failed",
        "-e",
        "approval.needed",
    )
    assert created.exit_code == 0, created.output
    sub = json.loads(created.output)
    assert sub["secret"].startswith("whsec_")
    assert sub["subscriptionId"] in cli(env, "subscriptions", "list").output
    assert "Queued ping" in cli(env, "subscriptions", "ping", sub["subscriptionId"]).output
    log = cli(env, "--json", "subscriptions", "deliveries", sub["subscriptionId"])
    assert json.loads(log.output)["items"][0]["event"]["type"] == "ping"
    assert "Paused" in cli(env, "subscriptions", "pause", sub["subscriptionId"]).output
    assert cli(env, "subscriptions", "delete", sub["subscriptionId"]).exit_code == 0


def test_limits_from_the_cli(env) -> None:
    env, _ = env
    assert "At most 3 fetch" in cli(env, "limits", "set", "fetch", "3").output
    listed = cli(env, "--json", "limits", "list")
    assert json.loads(listed.output)["items"][0]["maxRunning"] == 3
    assert cli(env, "limits", "remove", "fetch").exit_code == 0
    assert cli(env, "limits", "remove", "fetch").exit_code == 1


def test_usage_and_budgets_from_the_cli(env) -> None:
    env, _ = env
    assert "set" in cli(env, "budgets", "set", "workflow", "digest", "--max-cost", "5").output
    listed = cli(env, "--json", "budgets", "list")
    assert json.loads(listed.output)["items"][0]["maxCostUsd"] == 5
    usage = cli(env, "--json", "usage", "workflow", "digest")
    assert json.loads(usage.output)["total"]["reports"] == 0
    assert "today" in cli(env, "usage", "workflow", "digest").output
    assert cli(env, "budgets", "remove", "workflow", "digest").exit_code == 0
    assert cli(env, "budgets", "set", "team", "x", "--max-cost", "1").exit_code == 2


def test_version_json_anywhere_json_errors_and_full_width_when_piped(env) -> None:
    from opscore import __version__
    from opscore.cli import hoist_json

    env, _ = env
    assert runner.invoke(app, ["--version"]).output.strip() == f"opscore {__version__}"
    assert hoist_json(["agents", "list", "--json"]) == ["--json", "agents", "list"]
    assert hoist_json(["run", "x", "--", "--json"]) == ["run", "x", "--", "--json"]

    def opscore(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opscore", *args],
            env={**os.environ, **env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = opscore("agents", "list", "--json")  # --json after the subcommand
    assert listed.returncode == 0 and json.loads(listed.stdout)["total"] == 3
    missing = opscore("agents", "show", "ghost", "--json")
    assert missing.returncode == 1
    error = json.loads(missing.stderr)["error"]
    assert error["status"] == 404 and error["code"] == "AGENT_NOT_FOUND" and error["requestId"]
    away = opscore("agents", "list", OPSCORE_API_URL="http://127.0.0.1:9")
    assert away.returncode == 3 and "Cannot reach Ops-Core at http://127.0.0.1:9" in away.stderr
    # piped: a wide table is not clipped to 80 columns
    cli(env, "agents", "register", "a" * 60, "--id", "wide-agent-" + "x" * 50, "-c", "work")
    table = opscore("agents", "list")
    assert "wide-agent-" + "x" * 50 in table.stdout
    assert max(len(line) for line in table.stdout.splitlines()) > 80


def test_validate_offline_list_a_runs_tasks_and_retry_a_failed_run(env, tmp_path) -> None:
    env, fleet = env
    valid = runner.invoke(app, ["workflows", "validate", str(EXAMPLES / "reviewed-digest.yaml")])
    assert valid.exit_code == 0 and "valid: reviewed-digest" in valid.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\ntasks:\n  - taskId: a\n    whenn: 'true'\n")
    invalid = runner.invoke(app, ["--json", "workflows", "validate", str(bad)])
    assert invalid.exit_code == 1 and json.loads(invalid.output)["valid"] is False
    assert "unknown field 'whenn'" in json.loads(invalid.output)["message"]

    fleet.behaviours["fetch-agent"].kind = "fail"
    fleet.behaviours["fetch-agent"].failures = 3  # every attempt of the run; then it works
    assert cli(env, "workflows", "create", str(EXAMPLES / "digest.yaml")).exit_code == 0
    ran = cli(env, "--json", "run", "digest", "--wait", "--wait-timeout", "60")
    assert ran.exit_code == 4, ran.output
    detail = json.loads(ran.output)
    assert detail["status"] == "failed"
    sid = detail["sessionId"]
    failed = cli(env, "--json", "tasks", "list", "--session", sid, "--status", "failed")
    assert [t["stepId"] for t in json.loads(failed.output)] == ["fetch"]
    assert "fetch" in cli(env, "tasks", "list", "--session", sid).output
    retried = cli(env, "runs", "retry", sid)
    assert retried.exit_code == 0 and "Re-drove fetch" in retried.output
    done = cli(env, "--json", "sessions", "show", sid)
    wait_for(
        lambda: (
            json.loads(cli(env, "--json", "sessions", "show", sid).output)["status"] == "completed"
        ),
        timeout=30,
    )
    assert json.loads(done.output)["sessionId"] == sid
    nothing = cli(env, "runs", "retry", sid)
    assert nothing.exit_code == 1 and "NOTHING_TO_RETRY" in nothing.output


def test_a_waiting_run_says_what_it_waits_for(env) -> None:
    from opscore.cli import waiting_for

    env, _ = env
    create_body = {
        "id": "stuck",
        "tasks": [
            {"taskId": "a", "agentCapability": "nobody-has-it"},
            {"taskId": "b", "kind": "approval", "wait": {"prompt": "go?"}},
        ],
    }
    with OpsCoreClient(env["OPSCORE_API_URL"], env["OPSCORE_API_KEY"]) as client:
        client.create_workflow(json.dumps(create_body))
        sid = client.run_workflow("stuck").session_id
        detail = wait_for(
            lambda: (d := client.get_session(sid)).tasks[1].status.value == "waiting" and d
        )
        reasons = waiting_for(detail)
    assert any(
        "a waits for an available agent with capability 'nobody-has-it'" in r for r in reasons
    )
    assert any("b waits for an approval (go?)" in r for r in reasons)
    shown = cli(env, "run", "stuck", "--wait", "--wait-timeout", "1")
    assert shown.exit_code == 5
    said = " ".join(shown.output.split())  # the caption wraps to the table's width
    assert "waiting: a waits for an available agent with capability 'nobody-has-it'" in said
