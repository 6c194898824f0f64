from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from opscore.api import create_app
from opscore.config import Settings
from opscore.serve import http_protocol

from .servers import KEY, ServerThread

WEBHOOK_SECRET = "example-webhook-secret"
CONTRACTS = Path(__file__).resolve().parents[2] / "shared" / "contracts"
if not CONTRACTS.is_dir():
    CONTRACTS = Path(__file__).resolve().parent / "contracts"


def make_settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "api_key": KEY,
        "webhook_secret": WEBHOOK_SECRET,
        "dispatch_interval": 0.05,
        "retry_backoff_seconds": 0.05,
        "retry_max_backoff_seconds": 0.2,
        # liveness at test speed: sweeps every 50 ms, a silent agent probed every 0.2 s, and
        # two probes without an answer within 0.5 s each make it offline
        "liveness_interval": 0.05,
        "probe_interval": 0.2,
        "probe_timeout": 0.5,
        "probe_misses": 2,
        "log_level": "INFO",
        "log_format": "json",
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)


def contract(name: str) -> Any:
    return json.loads((CONTRACTS / name).read_text())


def now_iso(offset_seconds: float = 0) -> str:
    return datetime.fromtimestamp(datetime.now(UTC).timestamp() + offset_seconds, UTC).isoformat()


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    return make_settings


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerThread]]:
    started: list[ServerThread] = []

    def start(settings: Settings | None = None, **kwargs: Any) -> ServerThread:
        settings = settings or make_settings()
        app = create_app(settings, **kwargs)
        # the HTTP protocol `opscore serve` runs, not uvicorn's own
        server = ServerThread(app, http=http_protocol(settings)).start()
        server.app = app  # type: ignore[attr-defined]
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def server(server_factory: Callable[..., ServerThread]) -> ServerThread:
    return server_factory()


@pytest.fixture
def client(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ) as c:
        yield c


@pytest.fixture
def anon(server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.fixture
def fleet_factory(server_factory):
    """Start Ops-Core (with the given settings) and a fleet of fake agents talking to it."""
    from .fakes import FakeFleet

    fleets: list[FakeFleet] = []

    def start(
        settings: Settings | None = None, *, heartbeat: float | None = None, **kwargs: Any
    ) -> tuple[ServerThread, FakeFleet]:
        server = server_factory(settings, **kwargs)
        fleet = FakeFleet(server.url, KEY, heartbeat=heartbeat).start()
        fleets.append(fleet)
        return server, fleet

    yield start
    for fleet in fleets:
        fleet.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    from .storage_servers import RedisServer, require_redis

    require_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_writes(monkeypatch) -> list[int]:
    """How many commands each write of the Redis store's batcher carried, in order
    (storage/redis/batch.py)."""
    from opscore.storage.redis import batch

    sizes: list[int] = []
    send = batch._Replies.send

    def counted(self, commands):
        sizes.append(len(commands))
        send(self, commands)

    monkeypatch.setattr(batch._Replies, "send", counted)
    return sizes


@pytest.fixture
async def redis_counted(redis_server):
    """A Redis store on a flushed server, and ``calls(command)``: how often Redis ran it
    (``calls()``: every command but the counter's own INFO)."""
    import redis

    redis_server.flush()
    from opscore.storage import storage_from_url

    store = storage_from_url(redis_server.url)
    await store.open()
    counter = redis.Redis.from_url(redis_server.url)

    def calls(command: str | None = None) -> int:
        stats = counter.info("commandstats")
        if command is None:
            return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    yield store, calls
    counter.close()
    await store.close()


@pytest.fixture(scope="session")
def postgresql_server():
    from .storage_servers import PostgresServer, require_postgres

    require_postgres()
    server = PostgresServer().start()
    yield server
    server.remove()


STORES = ["memory", "sqlite", "redis", "postgresql"]


def store_url(request: Any, backend: str, tmp_path: Any) -> str:
    """The storage URL of ``backend`` for one test: a fresh file for SQLite, the shared
    server emptied for Redis and PostgreSQL."""
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    server = request.getfixturevalue(f"{backend}_server")
    server.flush()
    return str(server.url)


@pytest.fixture(params=STORES)
def ops(request, fleet_factory, tmp_path):
    """Ops-Core on each storage backend with a fleet of fake agents, and an admin client:
    every whole-flow test that takes it runs once per store."""
    settings = make_settings(storage_url=store_url(request, request.param, tmp_path))
    server, fleet = fleet_factory(settings)
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ) as c:
        yield c, fleet, server


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser():
    """Debian's Chromium, headless, driven by Playwright (its own download does not work here)."""
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()
