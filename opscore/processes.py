"""`opscore serve` as several processes on one port (``OPSCORE_PROCESSES``): one per core.

One process runs on one core: Python runs one thread of its code at a time. Celery's worker
forks a pool of processes for the same reason. Here uvicorn's supervisor binds the port once
and starts the processes, which accept its connections in turn. It starts again a process that
dies, and stops them all on SIGINT or SIGTERM. Each process is a replica of its own on the
shared store (Redis or PostgreSQL, as ``Settings`` requires): its own dispatcher, sweeps and
connections, exactly as replicas on several machines run (docs/replicas.md).

uvicorn spawns each process afresh and hands it the app by name (``process_app``), which builds
it from the same environment as this one; a key generated for this run is in it. Their
metrics are added up across processes: prometheus-client's multiprocess mode keeps each
process's counters in files of a directory this run creates and removes.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import ConfigError, StorageError
from .observe.metrics import MULTIPROCESS_DIR

PROTOCOL = "opscore.http.protocol:BoundedHeadersProtocol"


def serve_processes(settings: Settings) -> None:
    """Serve with ``settings.processes`` processes until stopped."""
    import uvicorn

    from .serve import check_store

    try:
        asyncio.run(check_store(settings))
    except (ConfigError, StorageError) as exc:
        sys.exit(f"Cannot start Ops-Core: {exc.message}")
    with tempfile.TemporaryDirectory(prefix="opscore-metrics-") as directory:
        os.environ[MULTIPROCESS_DIR] = directory  # the processes inherit it
        uvicorn.run(
            "opscore.processes:process_app",
            factory=True,
            workers=settings.processes,
            host=settings.host,
            port=settings.port,
            loop=settings.event_loop,
            http=_protocol(),
            log_config=None,
            access_log=False,
            proxy_headers=True,
            timeout_graceful_shutdown=10,
        )


def _protocol() -> str:
    """The protocol by name (uvicorn passes it to each process by reference)."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # uvicorn without its [standard] extras: its own h11 protocol
        return "auto"
    return PROTOCOL


def process_app() -> Any:
    """The app of one process (uvicorn's factory, called in that process)."""
    from prometheus_client import multiprocess

    from .api import create_app
    from .http.protocol import BoundedHeadersProtocol
    from .serve import tune_runtime

    settings = Settings()
    BoundedHeadersProtocol.header_timeout = settings.header_timeout_seconds
    app = create_app(settings)
    tune_runtime()
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:  # its "live" gauges stop counting once it is gone
        forget_dead_processes(directory)
        pid = os.getpid()
        atexit.register(lambda: multiprocess.mark_process_dead(pid, directory))
    return app


def forget_dead_processes(directory: str) -> list[int]:
    """Drop the "live" gauges of processes that ended without saying so (SIGKILL, out of
    memory): ``mark_process_dead`` runs at a normal exit only, and a process killed while its
    dispatcher was failing would have kept `opscore_background_degraded` at 1 for as long as
    the server runs. Called as each process starts, so also when one takes a dead one's place.
    Returns the processes forgotten."""
    from prometheus_client import multiprocess

    gone: set[int] = set()
    for path in Path(directory).glob("gauge_live*_*.db"):
        number = path.stem.rsplit("_", 1)[1]
        if number.isdigit() and not _running(int(number)):
            gone.add(int(number))
    for pid in gone:
        multiprocess.mark_process_dead(pid, directory)
    return sorted(gone)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: running
        return True
    return True
