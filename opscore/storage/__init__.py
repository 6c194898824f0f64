"""Storage backends, chosen by the scheme of ``OPSCORE_STORAGE_URL``; drivers load lazily."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError, StorageError
from .base import Storage
from .memory import MemoryStorage
from .urls import redacted

__all__ = ["MemoryStorage", "Storage", "redacted", "storage_from_url"]


def storage_from_url(url: str, *, finished_session_limit: int = 10_000) -> Storage:
    """Build (not open) the backend a URL names; unknown schemes stop start-up clearly."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStorage(finished_session_limit=finished_session_limit)
    if scheme == "sqlite":
        from .sqlite import SQLiteStorage, path_from_url

        try:
            return SQLiteStorage(path_from_url(url))
        except StorageError as exc:
            raise ConfigError(exc.message) from exc
    if scheme in ("redis", "rediss"):
        try:
            import redis  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "OPSCORE_STORAGE_URL is redis:// but the redis package is not installed: "
                "pip install 'opscore[redis]'"
            ) from exc
        from .redis import RedisStorage

        return RedisStorage(url)
    if scheme in ("postgresql", "postgres"):
        try:
            import asyncpg  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                "OPSCORE_STORAGE_URL is postgresql:// but the asyncpg package is not installed: "
                "pip install asyncpg"
            ) from exc
        from .postgres import PostgresStorage

        return PostgresStorage(url)
    raise ConfigError(
        f"Unsupported OPSCORE_STORAGE_URL scheme '{scheme or url}': "
        "use memory://, sqlite:///path/to/opscore.db, redis://host:port/db or "
        "postgresql://user:password@host:port/database"
    )
