"""Starting the server: settings from options and the environment, a generated key for a
first run, a banner that says where things are, then uvicorn."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import sys
from typing import Any

from pydantic import ValidationError

from .config import Settings
from .errors import ConfigError, StorageError
from .storage import redacted, storage_from_url


def _settings_error(exc: ValidationError) -> str:
    lines = ["Invalid configuration:"]
    for err in exc.errors():
        message = err["msg"].removeprefix("Value error, ")
        name = "_".join(str(p) for p in err["loc"]).upper()
        # a rule across settings (a model validator) has no one setting to name
        lines.append(f"  OPSCORE_{name}: {message}" if name else f"  {message}")
    return "\n".join(lines)


def load_settings(overrides: dict[str, object]) -> Settings:
    """Settings from the environment/.env, with CLI options on top; exits clearly if invalid."""
    for name, value in overrides.items():
        if value is not None:
            os.environ[f"OPSCORE_{name.upper()}"] = str(value)
    try:
        return Settings()
    except ValidationError as exc:
        sys.exit(_settings_error(exc))


def run_server(overrides: dict[str, object], *, reload: bool = False) -> None:
    settings = load_settings(overrides)
    generated = None
    if not settings.has_credentials():
        generated = secrets.token_urlsafe(24)
        os.environ["OPSCORE_API_KEY"] = generated
        settings = Settings()
    base = f"http://{settings.host}:{settings.port}"
    processes = f", {settings.processes} processes" if settings.processes > 1 else ""
    banner = [
        "",
        f"  Ops-Core on {base}  (storage: {redacted(settings.storage_url)}{processes})",
        f"  API docs:   {base}/docs   (ReDoc: {base}/redoc)",
        f"  Console:    {base}/dashboard",
    ]
    if generated:
        banner.append(
            f"  API key:    {generated}   (generated for this run; set OPSCORE_API_KEY to keep one)"
        )
    else:
        banner.append("  API key:    from OPSCORE_API_KEY / OPSCORE_API_KEYS / OPSCORE_KEYS_FILE")
    print("\n".join([*banner, ""]), file=sys.stderr, flush=True)

    if settings.processes > 1:
        from .processes import serve_processes

        serve_processes(settings)
        return

    import uvicorn

    from .api import create_app

    try:
        app = create_app(settings)
        asyncio.run(check_store(settings))
    except (ConfigError, StorageError) as exc:
        sys.exit(f"Cannot start Ops-Core: {exc.message}")
    tune_runtime()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop=settings.event_loop,
        http=http_protocol(settings),
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=10,
    )


def http_protocol(settings: Settings) -> Any:
    """uvicorn's httptools protocol with bounded request headers, when httptools is there."""
    try:
        from .http.protocol import bounded_headers_protocol
    except ImportError:  # uvicorn without its [standard] extras: its own h11 protocol
        return "auto"
    return bounded_headers_protocol(settings.header_timeout_seconds)


def tune_runtime() -> None:
    """The interpreter settings `opscore serve` runs with (benchmarks apply them too)."""
    # Long-lived objects (settings, routes, models' validators) never die: move them out of the
    # GC's reach, and collect the young generation a little less often. Full collections must
    # still run regularly: every refused request leaves a small cycle (exception <-> traceback),
    # and a soak run with near-disabled full collections grew steadily.
    gc.collect()
    gc.freeze()
    gc.set_threshold(7_000, 10, 10)
    # No JSON field uses the caller's file and line, thread or process names: skip collecting
    # them for every record (the logging HOWTO's "Optimization" section).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False


async def check_store(settings: Settings) -> None:
    """Fail fast, with one clear line, when the configured store cannot be opened."""
    storage = storage_from_url(settings.storage_url)
    await storage.open()
    await storage.close()
