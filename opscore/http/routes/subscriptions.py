"""Events out: subscriptions, their delivery logs, re-delivery and a test ping."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Response, status

from ...models import (
    ID_PATTERN,
    Delivery,
    Page,
    Subscription,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionUpdate,
)
from ..deps import PagingDep, ServicesDep, require
from . import CONFLICT, ERRORS, NOT_FOUND

router = APIRouter(prefix="/v1/opscore/subscriptions", tags=["events"], responses=ERRORS)
SubscriptionId = Annotated[
    str,
    Path(
        pattern=ID_PATTERN, description="The subscription's id.", examples=["sub-3f9c2a1b7d4e5f60"]
    ),
]
DeliveryId = Annotated[str, Path(max_length=200, description="The delivery's id.")]
CREATE_EXAMPLE = {
    "url": "https://hooks.example.com/opscore",
    "events": ["run.completed", "run.failed", "approval.needed"],
    "description": "On-call channel",
}


@router.post(
    "",
    summary="Subscribe a URL to events",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionCreated,
    dependencies=[require("events:write")],
)
async def create_subscription(
    body: Annotated[SubscriptionCreate, Body(examples=[CREATE_EXAMPLE])], services: ServicesDep
) -> SubscriptionCreated:
    """Every event of the kinds named is POSTed to the URL, signed with the subscription's
    secret (`X-OpsCore-Signature: sha256=HMAC(secret, "<X-OpsCore-Timestamp>." + body)`). The
    secret is in this answer only. A URL on a loopback, link-local or private address is 422
    (`EVENT_TARGET_REFUSED`) unless OPSCORE_EVENTS_ALLOW_PRIVATE_TARGETS is set."""
    return await services.subscriptions.create(body)


@router.get(
    "",
    summary="List subscriptions",
    response_model=Page[Subscription],
    dependencies=[require("read")],
)
async def list_subscriptions(services: ServicesDep, paging: PagingDep) -> Page[Subscription]:
    return await services.subscriptions.list_subscriptions(offset=paging.offset, limit=paging.limit)


@router.get(
    "/{subscriptionId}",
    summary="Get a subscription",
    response_model=Subscription,
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def get_subscription(subscriptionId: SubscriptionId, services: ServicesDep) -> Subscription:
    return await services.subscriptions.get(subscriptionId)


@router.patch(
    "/{subscriptionId}",
    summary="Change a subscription (URL, events, description, active)",
    response_model=Subscription,
    responses={**NOT_FOUND, **CONFLICT},
    dependencies=[require("events:write")],
)
async def update_subscription(
    subscriptionId: SubscriptionId,
    body: Annotated[SubscriptionUpdate, Body(examples=[{"active": False}])],
    services: ServicesDep,
) -> Subscription:
    return await services.subscriptions.update(subscriptionId, body)


@router.delete(
    "/{subscriptionId}",
    summary="Delete a subscription",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=NOT_FOUND,
    dependencies=[require("events:write")],
)
async def delete_subscription(subscriptionId: SubscriptionId, services: ServicesDep) -> Response:
    await services.subscriptions.delete(subscriptionId)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{subscriptionId}/deliveries",
    summary="A subscription's delivery log",
    response_model=Page[Delivery],
    responses=NOT_FOUND,
    dependencies=[require("read")],
)
async def list_deliveries(
    subscriptionId: SubscriptionId, services: ServicesDep, paging: PagingDep
) -> Page[Delivery]:
    """Newest first: each event, its status (pending, delivered, failed), attempts, the last
    answer's status code or error, and when it is tried next."""
    return await services.subscriptions.deliveries(
        subscriptionId, offset=paging.offset, limit=paging.limit
    )


@router.post(
    "/{subscriptionId}/deliveries/{deliveryId}/redeliver",
    summary="Send a delivery again",
    response_model=Delivery,
    responses=NOT_FOUND,
    dependencies=[require("events:write")],
)
async def redeliver(
    subscriptionId: SubscriptionId, deliveryId: DeliveryId, services: ServicesDep
) -> Delivery:
    """Delivered or failed, it is sent again now with a fresh set of attempts (the same
    delivery id, so a receiver that deduplicates sees a repeat)."""
    return await services.subscriptions.redeliver(subscriptionId, deliveryId)


@router.post(
    "/{subscriptionId}/ping",
    summary="Send a test event",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Delivery,
    responses=NOT_FOUND,
    dependencies=[require("events:write")],
)
async def ping(subscriptionId: SubscriptionId, services: ServicesDep) -> Delivery:
    """Queue a `ping` event for this subscription only, to check the receiver and its
    signature check; follow it in the delivery log."""
    return await services.events.ping(subscriptionId)
