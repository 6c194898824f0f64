"""Events out: subscriptions, the bus that turns what happens into deliveries, and the sender
that signs and delivers them with retries. Between the workflow and lifecycle rooms, which
publish, and the store, which keeps subscriptions and deliveries as documents."""

from .bus import EventBus
from .sender import DeliverySender
from .subscriptions import SubscriptionService

__all__ = ["DeliverySender", "EventBus", "SubscriptionService"]
