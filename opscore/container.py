"""Wires settings, storage, services and the dispatcher together for one app instance."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .auth import KeyStore, WebhookVerifier
from .config import Settings
from .dispatcher import Dispatcher
from .engine import WorkflowEngine
from .errors import ConfigError, OpsCoreError
from .lifecycle import Lifecycle
from .logging_config import LogBuffer
from .models import Agent, StateRecord
from .ratelimit import RateLimiter
from .storage import storage_from_url
from .storage.base import Storage
from .telemetry import Telemetry
from .tracing import Tracer, otel_exporter
from .transports import HttpTransport, SenderThread, Transport
from .workflow import load_directory

logger = logging.getLogger("opscore")


@dataclass
class Services:
    settings: Settings
    storage: Storage
    keys: KeyStore
    webhook: WebhookVerifier | None
    lifecycle: Lifecycle
    engine: WorkflowEngine
    dispatcher: Dispatcher
    transport: Transport
    rate_limiter: RateLimiter
    logs: LogBuffer
    telemetry: Telemetry
    extras: dict[str, object] = field(default_factory=dict)

    async def start(self) -> None:
        """Open the store, load template files, start the dispatcher."""
        await self.storage.open()
        if self.settings.workflows_dir is not None:
            await self._load_templates()
        await self.engine.recover()
        if self.settings.dispatcher_enabled:
            self.dispatcher.start()
        logger.info(
            "Ops-Core started",
            extra={
                "storage": self.settings.storage_url.split("://")[0],
                "dispatch": "agentkit" if self.settings.agentkit_api_url else "direct",
            },
        )

    async def stop(self) -> None:
        await self.dispatcher.stop()
        await self.transport.close()
        await self.storage.close()

    async def _load_templates(self) -> None:
        directory = self.settings.workflows_dir
        assert directory is not None
        if not directory.is_dir():
            raise ConfigError(f"OPSCORE_WORKFLOWS_DIR {directory} is not a directory")
        try:
            found = load_directory(directory, max_tasks=self.settings.max_template_tasks)
        except OpsCoreError as exc:
            raise ConfigError(
                f"Template in {directory} is invalid: {exc.message} {exc.details or ''}"
            ) from exc
        for path, definition in found:
            try:
                await self.engine.create_template(definition, source=f"file:{path.name}")
            except OpsCoreError as exc:
                raise ConfigError(f"Template {path}: {exc.message}") from exc
        logger.info("templates loaded", extra={"count": len(found), "directory": str(directory)})


def build_services(
    settings: Settings,
    logs: LogBuffer,
    *,
    storage: Storage | None = None,
    transport: Transport | None = None,
) -> Services:
    """Everything one app instance needs; raises ConfigError on a bad configuration."""
    storage = storage or storage_from_url(
        settings.storage_url, finished_session_limit=settings.session_retention
    )
    keys = KeyStore(settings)
    webhook = (
        WebhookVerifier(settings.webhook_secret, settings.webhook_tolerance_seconds)
        if settings.webhook_secret
        else None
    )
    lifecycle = Lifecycle(storage, settings)
    engine = WorkflowEngine(storage, settings, lifecycle)
    telemetry = Telemetry(
        storage,
        Tracer(settings.trace_buffer_size, otel_exporter() if settings.otel_export else None),
    )
    engine.telemetry = telemetry

    async def count_state(agent: Agent, record: StateRecord) -> None:
        telemetry.state_reports.labels(record.state).inc()

    lifecycle.state_listeners.append(count_state)
    if transport is None:
        transport = HttpTransport(settings.agentkit_api_url, timeout=settings.dispatch_timeout)
        if settings.dispatch_thread:
            transport = SenderThread(transport)
    dispatcher = Dispatcher(storage, settings, engine, lifecycle, transport)
    return Services(
        settings=settings,
        storage=storage,
        keys=keys,
        webhook=webhook,
        lifecycle=lifecycle,
        engine=engine,
        dispatcher=dispatcher,
        transport=transport,
        rate_limiter=RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst),
        logs=logs,
        telemetry=telemetry,
    )
