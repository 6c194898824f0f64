"""Real servers for tests: uvicorn in a background thread on a free 127.0.0.1 port, and
Ops-Core as a real process (``OpsCoreProcess``) that a test can SIGKILL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

KEY = "test-admin-key-0123456789"  # the admin key of every test app (conftest re-exports it)


class ServerThread:
    """Runs an ASGI app under uvicorn in its own thread and event loop; stops on exit."""

    def __init__(self, app: Any, *, port: int = 0, **config_options: Any) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            **config_options,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0
        self.loop: asyncio.AbstractEventLoop | None = None

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        await self.server.serve()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_for(predicate: Any, *, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Poll until predicate() is truthy (bounded); returns its value or raises AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def metric(text: str, name: str) -> float:
    """The value of one series (``name`` with its labels, as exposed) in a ``/metrics`` page;
    0 when it is absent."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


class OpsCoreProcess:
    """Ops-Core as a real process (``python -m opscore serve``) that a test can SIGKILL."""

    def __init__(self, storage_url: str, port: int, log: Path, **settings: str) -> None:
        self.port = port
        self.log = log
        self.env = {
            **os.environ,
            "OPSCORE_API_KEY": KEY,
            "OPSCORE_STORAGE_URL": storage_url,
            "OPSCORE_PORT": str(port),
            "OPSCORE_DISPATCH_INTERVAL": "0.05",
            "OPSCORE_DEFAULT_TASK_TIMEOUT": "3",
            "OPSCORE_RETRY_BACKOFF_SECONDS": "0.1",
            "OPSCORE_RETRY_MAX_BACKOFF_SECONDS": "0.5",
            "OPSCORE_DEFAULT_MAX_ATTEMPTS": "10",
            "OPSCORE_ACCESS_LOG": "false",
            **settings,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "opscore", "serve"], env=self.env, stdout=out, stderr=out
            )

        def healthy() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                return httpx.get(self.url + "/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout=30, interval=0.1)

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
