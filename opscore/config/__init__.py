"""Settings: one pydantic-settings class, ``OPSCORE_`` prefix, ``.env`` support.

A few names are shared with AgentKit deployments (one ``.env`` for both), so they are read
without the prefix or exactly as AgentKit spells them: ``AGENTKIT_API_URL``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .groups import _AgentsBeyondPush, _LivenessAndRetention

DEFAULT_STATES = ("initializing", "idle", "active", "busy", "error", "finished", "offline")
_PLACEHOLDER_KEYS = {
    "changeme",
    "change-me",
    "secret",
    "your-api-key",
    "api-key",
    "test",
    "password",
}

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(_LivenessAndRetention, _AgentsBeyondPush, BaseSettings):
    """Every setting Ops-Core reads; docs/configuration.md lists them for people."""

    model_config = SettingsConfigDict(
        env_prefix="OPSCORE_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    environment: Literal["development", "production"] = Field(
        "development", description="In production, placeholder keys and secrets are refused."
    )
    host: str = Field("127.0.0.1", description="Interface the server binds to.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port the server listens on.")
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio",
        description=(
            "Event loop of `opscore serve`. asyncio keeps every connection served in turn; "
            "uvloop left some connections waiting for seconds under load (bench/README.md)."
        ),
    )
    processes: int = Field(
        1,
        ge=1,
        le=64,
        description=(
            "Server processes of `opscore serve` on the one port, each a replica of its own on "
            "the shared store (redis:// or postgresql:// only): one per core uses them all."
        ),
    )

    # --- auth -------------------------------------------------------------------------------
    api_key: str | None = Field(
        None, description="One API key with the admin role (the key AgentKit agents send)."
    )
    api_keys: CommaList = Field(
        default_factory=list, description="Several admin keys, comma-separated."
    )
    keys_file: Path | None = Field(
        None, description="YAML file of named keys with roles; reloaded when it changes."
    )
    webhook_secret: str | None = Field(
        None, description="HMAC secret of AgentKit's registration webhook; unset disables it."
    )
    webhook_tolerance_seconds: int = Field(
        300, ge=1, le=86400, description="Maximum age of a webhook's X-AgentKit-Timestamp."
    )

    # --- integration --------------------------------------------------------------------------
    agentkit_api_url: str | None = Field(
        None,
        validation_alias=AliasChoices(
            "AGENTKIT_API_URL", "OPSCORE_AGENTKIT_API_URL", "agentkit_api_url"
        ),
        description="AgentKit's base URL without /v1; unset means dispatch straight to agents.",
    )
    storage_url: str = Field(
        "memory://",
        description="memory:// (default), sqlite:///path/to/opscore.db or redis://host:port/db.",
    )

    # --- logging ------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="Minimum level of log records."
    )
    log_format: Literal["json", "text"] = Field("json", description="Console log format.")
    log_file: Path | None = Field(None, description="Also write JSON logs to this rotating file.")
    log_file_max_bytes: int = Field(
        10_000_000, ge=1024, description="Rotate the log file at this size."
    )
    log_file_backups: int = Field(5, ge=0, le=100, description="Rotated log files to keep.")
    log_buffer_size: int = Field(
        5000, ge=100, le=1_000_000, description="Log records kept in memory for live inspection."
    )
    sse_keepalive_seconds: float = Field(
        15.0, gt=0, le=300, description="Keep-alive comment interval on the live log stream."
    )
    trace_buffer_size: int = Field(
        2000,
        ge=10,
        le=1_000_000,
        description="Traces (workflow runs, traced requests) kept in memory.",
    )
    otel_export: bool = Field(
        False,
        description=(
            "Export every span over OTLP, configured by the standard OTEL_EXPORTER_OTLP_* "
            "variables; needs the opscore[otel] extra."
        ),
    )
    access_log: bool = Field(True, description="One JSON line per HTTP request.")

    # --- limits -------------------------------------------------------------------------------
    state_history_limit: int = Field(
        100, ge=1, le=100_000, description="State reports kept per agent (oldest dropped)."
    )
    known_states: CommaList = Field(
        default_factory=lambda: list(DEFAULT_STATES), description="States agents may report."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, le=100_000_000, description="Largest request body accepted."
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Time a request's headers may take to arrive (a trickling client gets 408).",
    )
    body_timeout_seconds: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="Time a request body may take to arrive (a trickling client gets 408).",
    )
    session_retention: int = Field(
        10_000,
        ge=10,
        le=10_000_000,
        description=(
            "Finished sessions (with their tasks and dead letters) kept, on every store; the "
            "oldest go first."
        ),
    )
    max_page_size: int = Field(500, ge=1, le=10_000, description="Largest page a list returns.")
    rate_limit_per_second: float = Field(
        0.0, ge=0, le=1_000_000, description="Requests/s allowed per key; 0 turns limiting off."
    )
    rate_limit_burst: int = Field(200, ge=1, le=1_000_000, description="Burst size per key.")
    cors_origins: CommaList = Field(
        default_factory=list, description="Origins allowed by CORS; empty turns CORS off."
    )
    max_template_tasks: int = Field(200, ge=1, le=10_000, description="Most tasks in one template.")

    # --- workflows ----------------------------------------------------------------------------
    workflows_dir: Path | None = Field(
        None, description="Directory of *.json/*.yaml templates loaded at start-up."
    )
    default_task_timeout: float = Field(
        300.0, gt=0, le=86400, description="Seconds a dispatched task may run before it times out."
    )
    default_max_attempts: int = Field(3, ge=1, le=100, description="Attempts per task by default.")
    retry_backoff_seconds: float = Field(1.0, ge=0, le=3600, description="First retry delay.")
    retry_max_backoff_seconds: float = Field(60.0, ge=0, le=86400, description="Retry delay cap.")
    max_task_parameters_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=100_000_000,
        description="Largest a task's parameters may grow by ${...} substitution (422 at start).",
    )
    max_run_parameters_bytes: int = Field(
        8_388_608,
        ge=1024,
        le=1_000_000_000,
        description="Largest all of a run's task parameters may be together when it starts (422).",
    )
    dispatch_timeout: float = Field(
        10.0,
        gt=0,
        le=300,
        description=(
            "Seconds to connect to AgentKit or an agent when handing a task over. The answer "
            "itself may take up to the task's own timeout (agents that work inside the handler)."
        ),
    )
    dispatch_via: Literal["direct", "agentkit"] = Field(
        "direct",
        description=(
            "direct: POST each task to the agent's contactEndpoint and take its answer as the "
            "outcome. agentkit: POST to AGENTKIT_API_URL/v1/agents/{id}/run; AgentKit drops the "
            "agent's answer, so the agent's state reports decide."
        ),
    )
    dispatchable_states: CommaList = Field(
        default_factory=lambda: ["idle", "finished", "error"],
        description=(
            "Reported states in which an agent takes new work. 'error' is in by default: "
            "AgentKit agents stay in error until their next success, and an error ends a task, "
            "not an agent."
        ),
    )
    dispatch_thread: bool = Field(
        False,
        description=(
            "Hand tasks to agents from a dedicated thread. Keeps hand-overs fast while the API "
            "is saturated (on one busy event loop they took 1-3 s), at the price of GIL "
            "contention that cut workflow throughput by about 30% in bench/ when not saturated."
        ),
    )
    dispatch_interval: float = Field(
        0.5, gt=0, le=60, description="Longest the dispatcher sleeps when nothing wakes it."
    )
    idempotency_ttl: float = Field(
        86400.0, gt=0, description="Seconds an Idempotency-Key maps to its first session."
    )
    dispatcher_enabled: bool = Field(True, description="Run the dispatcher loop in this process.")

    # --- events out -----------------------------------------------------------------------
    events_allow_private_targets: bool = Field(
        False,
        description=(
            "Let subscriptions send events to loopback, link-local and private addresses "
            "(refused by default: a subscription must not reach into Ops-Core's own network)."
        ),
    )
    event_delivery_attempts: int = Field(
        8, ge=1, le=100, description="Attempts per event delivery before it is marked failed."
    )
    event_delivery_timeout: float = Field(
        10.0, gt=0, le=300, description="Seconds a receiver may take to answer a delivery."
    )
    event_retry_backoff_seconds: float = Field(
        2.0, ge=0, le=3600, description="First delay before a failed delivery is tried again."
    )
    event_retry_max_backoff_seconds: float = Field(
        3600.0, ge=0, le=86400, description="Longest delay between two attempts of a delivery."
    )
    event_deliveries_kept: int = Field(
        1000,
        ge=10,
        le=1_000_000,
        description="Deliveries kept per subscription in its log; the oldest go first.",
    )

    @field_validator(
        "api_key", "keys_file", "webhook_secret", "log_file", "workflows_dir", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """``OPSCORE_LOG_FILE=`` in a .env means unset, not the current directory."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "api_keys", "known_states", "dispatchable_states", "cors_origins", mode="before"
    )
    @classmethod
    def _comma_lists(cls, value: object) -> object:
        return _split_commas(value)

    @field_validator("agentkit_api_url", "public_url")
    @classmethod
    def _strip_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.removesuffix("/v1")

    @model_validator(mode="after")
    def _agentkit_dispatch_needs_its_url(self) -> Settings:
        if self.dispatch_via == "agentkit" and not self.agentkit_api_url:
            raise ValueError("OPSCORE_DISPATCH_VIA=agentkit needs AGENTKIT_API_URL")
        return self

    @model_validator(mode="after")
    def _processes_share_a_store_server(self) -> Settings:
        """Each process is a replica: memory:// would give each its own runs and agents, and
        processes on one SQLite file find each other's work only at the dispatch interval."""
        if self.processes > 1 and not self.storage_url.startswith(
            ("redis://", "rediss://", "postgresql://", "postgres://")
        ):
            raise ValueError(
                "OPSCORE_PROCESSES above 1 needs a shared store server: "
                "OPSCORE_STORAGE_URL=redis://... or postgresql://..."
            )
        return self

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        for key in self.admin_keys():
            if not key.strip():
                raise ValueError("API keys must not be empty")
            if self.environment == "production" and (
                key.lower() in _PLACEHOLDER_KEYS or len(key) < 16
            ):
                raise ValueError("placeholder or short API key refused in production")
        secret = self.webhook_secret
        if (
            self.environment == "production"
            and secret is not None
            and (secret.lower() in _PLACEHOLDER_KEYS or len(secret) < 16)
        ):
            raise ValueError("placeholder or short webhook secret refused in production")
        return self

    def admin_keys(self) -> list[str]:
        """Keys from OPSCORE_API_KEY and OPSCORE_API_KEYS; each has the admin role."""
        keys = list(self.api_keys)
        if self.api_key:
            keys.insert(0, self.api_key)
        return keys

    def has_credentials(self) -> bool:
        return bool(self.admin_keys()) or self.keys_file is not None
