"""The event bus: what happened, turned into one delivery per subscription that wants it.

Each event is published by the replica whose compare-and-set made it happen (the run that
completed, the task that was dead-lettered), so it is published once. A delivery is a document
due now; whichever replica's sender claims it first sends it.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..config import Settings
from ..models import Delivery, Event, StoredSubscription, utcnow
from ..observe.logs import log_operation
from ..storage.base import Storage
from .subscriptions import DELIVERY, SubscriptionService

logger = logging.getLogger("opscore.events")
# subscriptions are read at most this often per replica: a run ending reads none
CACHE_SECONDS = 1.0


class EventBus:
    """Publishes events as deliveries; never lets a failure reach the code that published."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        subscriptions: SubscriptionService,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.subscriptions = subscriptions
        self.clock = clock
        self.wake_sender: Callable[[], None] = lambda: None
        self._cached: list[StoredSubscription] | None = None
        self._cached_at = 0.0

    def forget(self) -> None:
        """Subscriptions changed here: read them again at the next event."""
        self._cached = None

    async def _subscribed(self, event_type: str) -> list[StoredSubscription]:
        if self._cached is None or time.monotonic() - self._cached_at > CACHE_SECONDS:
            self._cached = await self.subscriptions.all_stored()
            self._cached_at = time.monotonic()
        return [s for s in self._cached if s.active and event_type in s.events]

    async def publish(self, event_type: str, data: dict[str, Any]) -> None:
        """Queue the event for every active subscription that wants it."""
        try:
            targets = await self._subscribed(event_type)
            if not targets:
                return
            now = self.clock()
            event = Event(
                event_id=f"evt-{uuid.uuid4().hex}",
                type=event_type,  # type: ignore[arg-type]
                occurred_at=now,
                data=data,
            )
            for subscription in targets:
                await self.queue(subscription.subscription_id, event, now)
            self.wake_sender()
        except Exception:  # an event lost is logged; the run that caused it goes on
            logger.exception("event not queued", extra={"eventType": event_type})

    async def ping(self, subscription_id: str) -> Delivery:
        """A test event for one subscription (NotFoundError when there is none)."""
        await self.subscriptions.stored(subscription_id)
        now = self.clock()
        event = Event(event_id=f"evt-{uuid.uuid4().hex}", type="ping", occurred_at=now)
        delivery = await self.queue(subscription_id, event, now)
        self.wake_sender()
        return delivery

    async def queue(self, subscription_id: str, event: Event, now: datetime) -> Delivery:
        """One delivery of ``event`` to one subscription, due now; the log stays bounded."""
        delivery = Delivery(
            delivery_id=f"{subscription_id}:{time.time_ns():020d}:{uuid.uuid4().hex[:6]}",
            subscription_id=subscription_id,
            event=event,
            next_attempt_at=now,
            created_at=now,
        )
        await self.storage.put_document(
            DELIVERY, delivery.delivery_id, delivery.model_dump_json(), due_at=now
        )
        log_operation(
            "event.queued",
            {
                "eventType": event.type,
                "eventId": event.event_id,
                "subscriptionId": subscription_id,
                "deliveryId": delivery.delivery_id,
            },
            level=logging.DEBUG,
        )
        await self._trim(subscription_id)
        return delivery

    async def _trim(self, subscription_id: str) -> None:
        """Drop the oldest deliveries past the configured number kept per subscription."""
        kept = self.settings.event_deliveries_kept
        surplus = await self.storage.list_documents(
            DELIVERY, prefix=f"{subscription_id}:", offset=kept, limit=100, newest_first=True
        )
        for raw in surplus.items:
            old = Delivery.model_validate_json(raw)
            await self.storage.delete_document(DELIVERY, old.delivery_id)
