"""Storage backends, chosen by the scheme of ``OPSCORE_STORAGE_URL``."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Storage
from .memory import MemoryStorage

__all__ = ["MemoryStorage", "Storage", "storage_from_url"]

SUPPORTED_SCHEMES = ("memory",)


def storage_from_url(url: str) -> Storage:
    """Build (not open) the backend a URL names; unknown schemes stop start-up clearly."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStorage()
    raise ConfigError(
        f"Unsupported OPSCORE_STORAGE_URL scheme '{scheme or url}': "
        f"use one of {', '.join(s + '://' for s in SUPPORTED_SCHEMES)}"
    )
