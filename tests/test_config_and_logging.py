"""Settings and JSON logging."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from pydantic import ValidationError

from opscore.api import create_app
from opscore.config import Settings
from opscore.errors import ConfigError
from opscore.observe.logs import log_operation

from .conftest import make_settings
from .servers import wait_for


def test_settings_read_prefixed_env_and_agentkit_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPSCORE_API_KEYS", "k1, k2,,k3")
    monkeypatch.setenv("OPSCORE_PORT", "9001")
    monkeypatch.setenv("AGENTKIT_API_URL", "http://localhost:8000/")
    monkeypatch.setenv("OPSCORE_KNOWN_STATES", "idle,active")
    settings = Settings(_env_file=None)
    assert settings.api_keys == ["k1", "k2", "k3"]
    assert settings.port == 9001
    assert settings.agentkit_api_url == "http://localhost:8000"
    assert settings.known_states == ["idle", "active"]


def test_env_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = tmp_path / ".env"
    env.write_text("OPSCORE_API_KEY=from-file-key\nOPSCORE_LOG_LEVEL=DEBUG\n")
    settings = Settings(_env_file=env)
    assert settings.api_key == "from-file-key" and settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    "overrides",
    [
        {"port": 0},
        {"log_level": "LOUD"},
        {"state_history_limit": 0},
        {"agentkit_api_url": "localhost:8000"},
        {"environment": "production", "api_key": "changeme"},
        {
            "environment": "production",
            "api_key": "a-long-enough-production-key",
            "webhook_secret": "x",
        },
    ],
)
def test_invalid_settings_are_refused(overrides: dict) -> None:
    with pytest.raises(ValidationError):
        make_settings(**overrides)


def test_unknown_storage_scheme_stops_startup() -> None:
    with pytest.raises(ConfigError, match="Unsupported OPSCORE_STORAGE_URL"):
        create_app(make_settings(storage_url="mongodb://x"))


def test_invalid_environment_stops_serve_with_a_clear_message(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "opscore", "serve"],
        env={"OPSCORE_PORT": "not-a-port", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "OPSCORE_PORT" in result.stderr and "Traceback" not in result.stderr


def test_log_lines_are_json_with_context(capsys: pytest.CaptureFixture[str]) -> None:
    create_app(make_settings())
    log_operation("agent.state", {"agentId": "a1", "sessionId": "s1", "apiKey": "leak-me"})
    lines = [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]
    record = next(r for r in lines if r.get("message") == "agent.state")
    assert record["level"] == "INFO" and record["logger"] == "opscore.agent"
    assert record["agentId"] == "a1" and record["sessionId"] == "s1"
    assert record["apiKey"] == "[redacted]"
    assert "timestamp" in record


def test_the_console_file_and_logs_api_show_one_record_alike(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each record is built once (observe/logs.py ``entry``) and shared by every handler: the
    console, the log file and the buffer behind the logs API show the same fields. A record
    with an exception or a dict message takes python-json-logger's own path."""
    log_file = tmp_path / "opscore.log"
    app = create_app(make_settings(log_file=log_file))
    buffer = app.state.services.logs
    log_operation("task.failed", {"taskId": "t1", "attempt": 2, "webhookSecret": "leak-me"})
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("opscore.test").exception("failed %s", "t2", extra={"taskId": "t2"})
    logging.getLogger("opscore.test").info({"shape": "dict"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    console = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.startswith("{")]
    in_file = [json.loads(x) for x in log_file.read_text().splitlines()]
    kept = buffer.snapshot()[-3:]
    for lines in (console[-3:], in_file[-3:]):
        plain, failed, shaped = lines
        assert plain == {k: v for k, v in kept[0].items() if k != "id"}
        assert plain["webhookSecret"] == "[redacted]" and plain["attempt"] == 2
        assert plain["requestId"] is None and plain["operation"] == "task.failed"
        assert failed["message"] == "failed t2" and failed["taskId"] == "t2"
        assert "ValueError: boom" in failed["exc_info"]
        assert shaped["shape"] == "dict"
    assert "ValueError: boom" in kept[1]["exception"] and kept[1]["taskId"] == "t2"


def test_rotating_log_file_gets_json(tmp_path) -> None:
    log_file = tmp_path / "logs" / "opscore.log"
    create_app(make_settings(log_file=log_file))
    logging.getLogger("opscore.test").warning("to the file", extra={"taskId": "t1"})
    for handler in logging.getLogger().handlers:
        handler.flush()
    record = json.loads(log_file.read_text().splitlines()[-1])
    assert record["message"] == "to the file" and record["taskId"] == "t1"


def test_access_log_has_method_path_status_duration(server, client) -> None:
    client.get("/v1/opscore/agents", headers={"X-Request-ID": "req-42"})

    def access_line() -> dict | None:
        records = server.app.state.services.logs.snapshot()
        return next(
            (r for r in records if r["logger"] == "opscore.access" and r["requestId"] == "req-42"),
            None,
        )

    access = wait_for(access_line, timeout=5)  # logged just after the response is sent
    assert access["method"] == "GET" and access["path"] == "/v1/opscore/agents"
    assert access["status"] == 200 and access["durationMs"] >= 0


def test_blank_values_from_env_example_mean_unset(tmp_path) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "OPSCORE_API_KEY=\nOPSCORE_LOG_FILE=\nOPSCORE_WORKFLOWS_DIR=\nOPSCORE_KEYS_FILE=\n"
    )
    settings = Settings(_env_file=env)
    assert settings.api_key is None and settings.log_file is None
    assert settings.workflows_dir is None and settings.keys_file is None


def test_env_example_lists_every_setting() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / ".env.example").read_text()
    for name in Settings.model_fields:
        env_name = "AGENTKIT_API_URL" if name == "agentkit_api_url" else f"OPSCORE_{name.upper()}"
        assert f"{env_name}=" in text, f"{env_name} missing from .env.example"


def test_configuration_guide_lists_every_setting() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    for name in Settings.model_fields:
        env_name = "AGENTKIT_API_URL" if name == "agentkit_api_url" else f"OPSCORE_{name.upper()}"
        assert f"`{env_name}`" in text, f"{env_name} missing from docs/configuration.md"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://ops:pw@db:5432/ops", "postgresql://ops:***@db:5432/ops"),
        ("redis://:pw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
        ("sqlite:///data/opscore.db", "sqlite:///data/opscore.db"),
    ],
)
def test_store_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    from opscore.storage import redacted

    assert redacted(url) == shown
