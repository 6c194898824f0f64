"""What Ops-Core needs of the Redis server, checked once at start."""

from __future__ import annotations

from typing import Any

from ...errors import StorageError
from ..urls import redacted

# SET ... GET and ZMSCORE, which the scripts use (and CLIENT TRACKING's broadcasting mode,
# Redis 6.0, which the fleet's feed uses: fleet_feed.py)
MIN_VERSION = (6, 2)


def version_of(text: str) -> tuple[int, ...]:
    """``7.0.15`` as (7, 0, 15); a part that is not a number ends it."""
    parts: list[int] = []
    for part in text.split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def require_version(server: dict[str, Any], url: str) -> None:
    """Refuse a Redis older than the scripts need, by name, at start (not a script error
    at the first run)."""
    version = str(server.get("redis_version", "0"))
    if version_of(version) < MIN_VERSION:
        raise StorageError(
            f"Redis at {redacted(url)} is version {version}; Ops-Core needs "
            f"{'.'.join(map(str, MIN_VERSION))} or newer (its scripts use SET ... GET and ZMSCORE)"
        )
