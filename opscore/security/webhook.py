"""The AgentKit registration webhook's signature: HMAC-SHA256 over the raw body, replay-proof."""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections import OrderedDict

from ..errors import AuthenticationError

logger = logging.getLogger("opscore.auth")


class WebhookVerifier:
    """Checks AgentKit's ``X-AgentKit-Signature`` over ``<timestamp>.<raw body>``.

    Rejects stale or future timestamps beyond the tolerance, and any signature already seen
    within the tolerance window (a replay).
    """

    def __init__(self, secret: str, tolerance: int) -> None:
        self._secret = secret.encode("utf-8")
        self._tolerance = tolerance
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def signature(self, timestamp: str, body: bytes) -> str:
        return hmac.new(self._secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()

    def verify(
        self, timestamp: str | None, signature: str | None, body: bytes, *, now: float
    ) -> None:
        if not timestamp or not signature:
            raise AuthenticationError(
                "Missing X-AgentKit-Timestamp or X-AgentKit-Signature header",
                code="MISSING_SIGNATURE",
            )
        try:
            sent = int(timestamp)
        except ValueError:
            raise AuthenticationError(
                "X-AgentKit-Timestamp must be unix seconds", code="INVALID_SIGNATURE"
            ) from None
        if abs(now - sent) > self._tolerance:
            raise AuthenticationError(
                f"Webhook timestamp is outside the {self._tolerance}s tolerance",
                code="STALE_WEBHOOK",
            )
        expected = self.signature(timestamp, body)
        if not hmac.compare_digest(expected, signature.strip().lower()):
            logger.warning("webhook signature mismatch")
            raise AuthenticationError("Invalid webhook signature", code="INVALID_SIGNATURE")
        with self._lock:
            cutoff = now - self._tolerance
            while self._seen and next(iter(self._seen.values())) < cutoff:
                self._seen.popitem(last=False)
            if expected in self._seen:
                raise AuthenticationError(
                    "Webhook already received (replay)", code="REPLAYED_WEBHOOK"
                )
            self._seen[expected] = float(sent)
