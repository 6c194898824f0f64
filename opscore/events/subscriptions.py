"""Subscriptions: create, read, change and remove them; each delivery log, and re-delivery."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..config import Settings
from ..errors import ConflictError, NotFoundError
from ..models import (
    Delivery,
    Page,
    StoredSubscription,
    Subscription,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionUpdate,
    utcnow,
)
from ..observe.logs import log_operation
from ..storage.base import Storage
from .addresses import check_target

SUBSCRIPTION = "subscription"
DELIVERY = "delivery"


class SubscriptionService:
    """Subscriptions and their delivery logs, kept as documents in the store."""

    def __init__(
        self,
        storage: Storage,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.storage = storage
        self.settings = settings
        self.clock = clock
        self.on_change = on_change  # the bus forgets the subscriptions it cached
        self.wake_sender: Callable[[], None] = lambda: None

    async def create(self, body: SubscriptionCreate) -> SubscriptionCreated:
        """Store a subscription; its secret is generated unless given, and shown once."""
        url = str(body.url)
        await check_target(url, allow_private=self.settings.events_allow_private_targets)
        now = self.clock()
        secret = body.secret or f"whsec_{secrets.token_urlsafe(32)}"
        stored = StoredSubscription(
            subscription_id=f"sub-{uuid.uuid4().hex[:16]}",
            url=url,
            events=sorted(set(body.events)),
            description=body.description,
            secret=secret,
            secret_hint=secret[-4:],
            created_at=now,
            updated_at=now,
        )
        await self._save(stored)
        log_operation(
            "subscription.created",
            {"subscriptionId": stored.subscription_id, "url": url, "events": stored.events},
        )
        return SubscriptionCreated(**stored.model_dump())

    async def get(self, subscription_id: str) -> Subscription:
        """A subscription without its secret, or NotFoundError."""
        return _public(await self.stored(subscription_id))

    async def stored(self, subscription_id: str) -> StoredSubscription:
        raw = await self.storage.get_document(SUBSCRIPTION, subscription_id)
        if raw is None:
            raise NotFoundError(
                f"Subscription '{subscription_id}' not found", code="SUBSCRIPTION_NOT_FOUND"
            )
        return StoredSubscription.model_validate_json(raw)

    async def list_subscriptions(self, *, offset: int, limit: int) -> Page[Subscription]:
        page = await self.storage.list_documents(SUBSCRIPTION, offset=offset, limit=limit)
        items = [_public(StoredSubscription.model_validate_json(d)) for d in page.items]
        return Page(items=items, total=page.total, offset=offset, limit=limit)

    async def all_stored(self) -> list[StoredSubscription]:
        """Every subscription, secrets included (for the bus)."""
        found: list[StoredSubscription] = []
        while True:
            page = await self.storage.list_documents(SUBSCRIPTION, offset=len(found), limit=500)
            found += [StoredSubscription.model_validate_json(d) for d in page.items]
            if not page.items or len(found) >= page.total:
                return found

    async def update(self, subscription_id: str, body: SubscriptionUpdate) -> Subscription:
        current = await self.stored(subscription_id)
        changes: dict[str, Any] = body.model_dump(exclude_unset=True, exclude_none=True)
        if "url" in changes:
            changes["url"] = str(body.url)
            await check_target(
                changes["url"], allow_private=self.settings.events_allow_private_targets
            )
        if "events" in changes:
            changes["events"] = sorted(set(changes["events"]))
        updated = current.model_copy(update={**changes, "updated_at": self.clock()})
        if not await self.storage.put_document(
            SUBSCRIPTION,
            subscription_id,
            updated.model_dump_json(),
            due_at=None,
            expect=current.model_dump_json(),
        ):
            raise ConflictError(
                f"Subscription '{subscription_id}' changed meanwhile; read it and try again",
                code="SUBSCRIPTION_CHANGED",
            )
        self.on_change()
        log_operation("subscription.updated", {"subscriptionId": subscription_id, **changes})
        return _public(updated)

    async def delete(self, subscription_id: str) -> None:
        """Remove a subscription; its pending deliveries are dropped when they come due."""
        if not await self.storage.delete_document(SUBSCRIPTION, subscription_id):
            raise NotFoundError(
                f"Subscription '{subscription_id}' not found", code="SUBSCRIPTION_NOT_FOUND"
            )
        self.on_change()
        log_operation("subscription.deleted", {"subscriptionId": subscription_id})

    async def deliveries(self, subscription_id: str, *, offset: int, limit: int) -> Page[Delivery]:
        """A subscription's delivery log, newest first."""
        await self.stored(subscription_id)
        page = await self.storage.list_documents(
            DELIVERY, prefix=f"{subscription_id}:", offset=offset, limit=limit, newest_first=True
        )
        items = [Delivery.model_validate_json(d) for d in page.items]
        return Page(items=items, total=page.total, offset=offset, limit=limit)

    async def redeliver(self, subscription_id: str, delivery_id: str) -> Delivery:
        """Send a delivery again now, whatever became of it; its attempts start over."""
        if not delivery_id.startswith(f"{subscription_id}:"):
            raise NotFoundError(f"Delivery '{delivery_id}' not found", code="DELIVERY_NOT_FOUND")
        await self.stored(subscription_id)
        raw = await self.storage.get_document(DELIVERY, delivery_id)
        if raw is None:
            raise NotFoundError(f"Delivery '{delivery_id}' not found", code="DELIVERY_NOT_FOUND")
        now = self.clock()
        again = Delivery.model_validate_json(raw).model_copy(
            update={"status": "pending", "attempts": 0, "next_attempt_at": now}
        )
        await self.storage.put_document(DELIVERY, delivery_id, again.model_dump_json(), due_at=now)
        log_operation(
            "event.redelivery", {"subscriptionId": subscription_id, "deliveryId": delivery_id}
        )
        self.wake_sender()
        return again

    async def _save(self, stored: StoredSubscription) -> None:
        await self.storage.put_document(
            SUBSCRIPTION, stored.subscription_id, stored.model_dump_json(), due_at=None
        )
        self.on_change()


def _public(stored: StoredSubscription) -> Subscription:
    return Subscription(**stored.model_dump(exclude={"secret"}))
