"""The sender: claims due deliveries, signs and POSTs them, retries failures with backoff.

Every replica runs one. A delivery is claimed under a lease (``Storage.claim_due``), so two
replicas never send it at once, and one whose replica died mid-send is sent again when the
lease runs out: delivery is at least once, and receivers dedupe on ``X-OpsCore-Delivery``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from ..config import Settings
from ..errors import NotFoundError
from ..models import Delivery, StoredSubscription, utcnow
from ..observe.logs import log_operation
from ..signatures import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from ..storage.base import Storage
from .addresses import PinnedTransport
from .subscriptions import DELIVERY, SubscriptionService

logger = logging.getLogger("opscore.events")
BATCH = 20
IDLE_SECONDS = 1.0  # longest the sender sleeps when nothing wakes it


class DeliverySender:
    """Delivers queued events; ``start`` and ``stop`` it with the app."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        subscriptions: SubscriptionService,
        *,
        clock: Callable[[], datetime] = utcnow,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.subscriptions = subscriptions
        self.clock = clock
        self.rng = rng
        self.wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def wake(self) -> None:
        self.wakeup.set()

    def start(self) -> None:
        # unless internal targets are allowed, every connection goes to addresses just checked
        pinned = None if self.settings.events_allow_private_targets else PinnedTransport()
        self._client = httpx.AsyncClient(
            timeout=self.settings.event_delivery_timeout, follow_redirects=False, transport=pinned
        )
        self._task = asyncio.create_task(self._run(), name="opscore-event-sender")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                sent = await self.send_due()
                failures = 0
            except Exception:  # the store is away, or a bug: back off, never die
                failures += 1
                logger.exception("event sender pass failed")
                sent = 0
                await asyncio.sleep(min(0.5 * 2**failures, 30))
            if sent < BATCH:
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), IDLE_SECONDS)

    async def send_due(self) -> int:
        """One pass: send every delivery due now (at most a batch); returns how many."""
        lease = self.settings.event_delivery_timeout + 30
        claimed = await self.storage.claim_due(
            DELIVERY, self.clock(), limit=BATCH, lease_seconds=lease
        )
        await asyncio.gather(*(self._deliver(raw) for raw in claimed))
        return len(claimed)

    async def _deliver(self, raw: str) -> None:
        delivery = Delivery.model_validate_json(raw)
        try:
            subscription = await self.subscriptions.stored(delivery.subscription_id)
        except NotFoundError:  # the subscription was deleted: its deliveries go with it
            await self.storage.delete_document(DELIVERY, delivery.delivery_id)
            return
        code, error = await self._post(subscription, delivery)
        now = self.clock()
        attempts = delivery.attempts + 1
        if error is None:
            done = delivery.model_copy(
                update={
                    "status": "delivered",
                    "attempts": attempts,
                    "last_status_code": code,
                    "last_error": None,
                    "next_attempt_at": None,
                    "delivered_at": now,
                }
            )
            await self._save(done, raw, None)
            return
        gave_up = attempts >= self.settings.event_delivery_attempts
        retry_at = None if gave_up else now + timedelta(seconds=self.backoff(attempts))
        failed = delivery.model_copy(
            update={
                "status": "failed" if gave_up else "pending",
                "attempts": attempts,
                "last_status_code": code,
                "last_error": error,
                "next_attempt_at": retry_at,
            }
        )
        await self._save(failed, raw, retry_at)
        log_operation(
            "event.delivery_failed",
            {
                "subscriptionId": subscription.subscription_id,
                "deliveryId": delivery.delivery_id,
                "eventType": delivery.event.type,
                "attempt": attempts,
                "error": error,
                "retryAt": retry_at.isoformat() if retry_at else None,
            },
            level=logging.ERROR if gave_up else logging.WARNING,
        )

    async def _save(self, delivery: Delivery, claimed: str, due_at: datetime | None) -> None:
        # only over what was claimed: a re-delivery asked for meanwhile wins
        await self.storage.put_document(
            DELIVERY,
            delivery.delivery_id,
            delivery.model_dump_json(),
            due_at=due_at,
            expect=claimed,
        )

    async def _post(
        self, subscription: StoredSubscription, delivery: Delivery
    ) -> tuple[int | None, str | None]:
        """POST the signed event; (status code, None) on 2xx, else (code or None, why). The
        target's addresses are checked as the connection is made (``PinnedTransport``)."""
        body = delivery.event.model_dump_json(by_alias=True).encode()
        timestamp = str(int(self.clock().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "Ops-Core-Events/1",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: "sha256=" + sign(subscription.secret, timestamp, body),
            EVENT_HEADER: delivery.event.type,
            DELIVERY_HEADER: delivery.delivery_id,
        }
        assert self._client is not None
        try:
            response = await self._client.post(subscription.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if 200 <= response.status_code < 300:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}"

    def backoff(self, attempts: int) -> float:
        """Exponential from the configured first delay, capped, with +/-20% jitter."""
        base = self.settings.event_retry_backoff_seconds * 2 ** max(attempts - 1, 0)
        base = min(base, self.settings.event_retry_max_backoff_seconds)
        return base * (0.8 + 0.4 * self.rng())
