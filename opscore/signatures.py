"""Signatures on the events Ops-Core sends: HMAC-SHA256 over ``"<timestamp>." + body``.

The scheme AgentKit signs its own webhook with, so one verifier serves both. Standard library
only, so that a receiver verifies what it gets with the SDK installed alone
(``from opscore.signatures import verify``, docs/events.md).
"""

from __future__ import annotations

import hashlib
import hmac

TIMESTAMP_HEADER = "X-OpsCore-Timestamp"
SIGNATURE_HEADER = "X-OpsCore-Signature"
EVENT_HEADER = "X-OpsCore-Event"
DELIVERY_HEADER = "X-OpsCore-Delivery"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``timestamp + "." + body`` under ``secret``."""
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    now: float,
    tolerance: float = 300,
) -> bool:
    """True when the signature is right and the timestamp within ``tolerance`` seconds of
    ``now`` (a delivery replayed later fails); compared in constant time."""
    if not timestamp or not signature:
        return False
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs(now - sent) > tolerance:
        return False
    expected = sign(secret, timestamp, body)
    given = signature.strip().lower().removeprefix("sha256=")
    return hmac.compare_digest(expected, given)
