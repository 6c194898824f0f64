"""API keys and roles.

Keys are held only as SHA-256 digests and compared in constant time against every known key.
Keys come from ``OPSCORE_API_KEY``/``OPSCORE_API_KEYS`` (role admin) and, optionally, a YAML
keys file that is re-read when it changes, so keys rotate without a restart.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from ..config import Settings
from ..errors import AuthenticationError, ConfigError, PermissionDeniedError

Role = Literal["admin", "operator", "agent", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "operator", "agent", "viewer")

# What each role may do; routes ask for one scope each.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "read",
            "agents:write",
            "state:write",
            "workflows:write",
            "runs:write",
            "tasks:result",
            "approvals:write",
            "signals:send",
            "events:write",
            "admin",
        }
    ),
    "operator": frozenset(
        {
            "read",
            "agents:write",
            "state:write",
            "workflows:write",
            "runs:write",
            "tasks:result",
            "approvals:write",
            "signals:send",
            "events:write",
        }
    ),
    # agents may signal a run (an event they saw), never approve a step
    "agent": frozenset({"state:write", "tasks:result", "signals:send"}),
    "viewer": frozenset({"read"}),
}

logger = logging.getLogger("opscore.auth")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the key's name and role, never the key itself."""

    name: str
    role: str
    agents: frozenset[str] = field(default_factory=frozenset)

    def can(self, scope: str) -> bool:
        return scope in ROLE_SCOPES.get(self.role, frozenset())

    def require(self, scope: str) -> None:
        if not self.can(scope):
            logger.warning(
                "permission denied", extra={"keyName": self.name, "role": self.role, "scope": scope}
            )
            raise PermissionDeniedError(
                f"The '{self.role}' role may not do this (needs '{scope}')", code="FORBIDDEN"
            )

    def require_agent(self, agent_id: str) -> None:
        """Agent keys act only for the agents bound to them; other roles for any agent."""
        if self.role == "agent" and agent_id not in self.agents:
            logger.warning(
                "agent not allowed for key", extra={"keyName": self.name, "agentId": agent_id}
            )
            raise PermissionDeniedError(
                f"This key may not act for agent '{agent_id}'", code="AGENT_NOT_ALLOWED"
            )


@dataclass(frozen=True)
class _KeyEntry:
    digest: bytes
    caller: Caller


_HEX_DIGEST = re.compile(r"^[0-9a-fA-F]{64}$")


def _load_keys_file(path: Path) -> list[_KeyEntry]:
    """Parse a keys file. Errors name the entry and the problem, never any of the file's
    content: a YAML error's own message quotes the file, and the file holds keys."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read keys file {path}: {type(exc).__name__}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"Keys file {path} is not valid YAML{where}") from None
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise ConfigError(f"Keys file {path} must hold a 'keys' list")
    entries = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("name") or item.get("role") not in ROLES:
            raise ConfigError(f"Keys file {path}: entry {i} needs a name and a role in {ROLES}")
        name = str(item["name"])[:100]
        if item.get("key_sha256"):
            digest = str(item["key_sha256"]).strip()
            if not _HEX_DIGEST.match(digest):
                raise ConfigError(
                    f"Keys file {path}: entry {i} ('{name}'): key_sha256 must be 64 hex digits"
                )
        elif item.get("key"):
            digest = sha256_hex(str(item["key"]))
        else:
            raise ConfigError(f"Keys file {path}: entry {i} ('{name}') needs key_sha256 or key")
        agents_field = item.get("agents") or []
        if not isinstance(agents_field, list):
            raise ConfigError(f"Keys file {path}: entry {i} ('{name}'): agents must be a list")
        agents = frozenset(str(a) for a in agents_field)
        entries.append(_KeyEntry(bytes.fromhex(digest), Caller(name, item["role"], agents)))
    return entries


class KeyStore:
    """Resolves presented keys to callers; reloads the keys file when its mtime changes."""

    def __init__(self, settings: Settings) -> None:
        self._static = [
            _KeyEntry(bytes.fromhex(sha256_hex(k)), Caller(f"admin-{i + 1}", "admin"))
            for i, k in enumerate(settings.admin_keys())
        ]
        self._path = settings.keys_file
        self._mtime: float | None = None
        self._file_entries: list[_KeyEntry] = []
        self._lock = threading.Lock()
        if self._path is not None:
            self._reload(force=True)
        if not self._static and not self._file_entries:
            raise ConfigError(
                "No API key configured: set OPSCORE_API_KEY (or OPSCORE_API_KEYS / "
                "OPSCORE_KEYS_FILE); `opscore serve` generates one for development"
            )

    def _reload(self, *, force: bool = False) -> None:
        assert self._path is not None
        try:
            mtime = self._path.stat().st_mtime
        except OSError as exc:
            if force:
                raise ConfigError(f"Keys file {self._path} not readable: {exc}") from exc
            return
        if not force and mtime == self._mtime:
            return
        try:
            entries = _load_keys_file(self._path)
        except ConfigError as exc:
            if force:
                raise
            # one line, no traceback, no content; not read again until the file changes
            with self._lock:
                self._mtime = mtime
            logger.error(
                "keys file reload failed; keeping the previous keys",
                extra={"problem": exc.message},
            )
            return
        with self._lock:
            self._file_entries, self._mtime = entries, mtime
        if not force:
            logger.info("keys file reloaded", extra={"keys": len(entries)})

    def resolve(self, presented: str | None) -> Caller:
        """The caller a key belongs to; AuthenticationError if missing or unknown."""
        if not presented:
            raise AuthenticationError(
                "Missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                code="MISSING_API_KEY",
            )
        if self._path is not None:
            self._reload()
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        found: Caller | None = None
        with self._lock:
            entries = [*self._static, *self._file_entries]
        for entry in entries:  # no early exit: time does not depend on which key matched
            if hmac.compare_digest(entry.digest, digest):
                found = entry.caller
        if found is None:
            logger.warning("invalid API key presented")
            raise AuthenticationError("Invalid API key", code="INVALID_API_KEY")
        return found


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key from ``Authorization: Bearer`` (AgentKit's way) or ``X-API-Key``."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_api_key or None
