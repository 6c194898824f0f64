"""The Dockerfile and compose files, checked by reading (Docker is not available where the
tests run): what they reference exists, and what they ask of the app is what it serves."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from opscore.storage import storage_from_url

ROOT = Path(__file__).resolve().parents[1]


def _compose(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _health_paths(service: dict) -> set[str]:
    test = " ".join(service["healthcheck"]["test"])
    return set(re.findall(r"http://127\.0\.0\.1:\d+(/[\w/-]*)", test))


def _answers(anon, path: str) -> bool:
    return anon.get(path).status_code == 200


def test_the_dockerfile_copies_what_exists_and_runs_the_console_script(anon) -> None:
    text = (ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert 'CMD ["opscore", "serve"]' in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'opscore = "opscore.cli:main"' in pyproject
    assert _answers(anon, "/health")


def test_the_single_service_compose_file_checks_a_route_that_answers(anon) -> None:
    paths = _health_paths(_compose("docker-compose.yml")["services"]["opscore"])
    assert paths and all(_answers(anon, p) for p in paths)


def test_the_replicas_compose_file_wires_postgres_replicas_and_nginx(anon) -> None:
    compose = _compose("deploy/compose.replicas.yml")
    services = compose["services"]
    assert set(services) == {"postgres", "opscore", "lb"}
    opscore = services["opscore"]
    assert opscore["deploy"]["replicas"] >= 2
    # replicas are healthy when ready (store and dispatcher), and wait for a healthy database
    assert _health_paths(opscore) == {"/ready"} and _answers(anon, "/ready")
    assert opscore["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["lb"]["depends_on"]["opscore"]["condition"] == "service_healthy"
    # the store URL is one Ops-Core accepts, with the database the postgres service creates
    url = opscore["environment"]["OPSCORE_STORAGE_URL"].replace(
        "${POSTGRES_PASSWORD:-opscore}", "opscore"
    )
    assert type(storage_from_url(url)).__name__ == "PostgresStorage"
    database = services["postgres"]["environment"]["POSTGRES_DB"]
    assert url.endswith(f"@postgres:5432/{database}")
    # nginx proxies to the replicas' service name and port, and the file it mounts exists
    mount = services["lb"]["volumes"][0].split(":")[0]
    conf = (ROOT / "deploy" / mount).read_text()
    port = opscore["environment"]["OPSCORE_PORT"]
    assert f"server opscore:{port}" in conf and "proxy_pass http://opscore;" in conf
    assert services["lb"]["ports"] == [f"{port}:{port}"]
    assert "proxy_buffering off" in conf  # the live log stream
