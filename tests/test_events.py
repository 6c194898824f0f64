"""Events out: subscriptions, signed deliveries to a real receiver, retries, the delivery log,
re-delivery, refused internal targets, and one delivery per event across replicas."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from opscore.config import Settings
from opscore.events import DeliverySender, EventBus, SubscriptionService
from opscore.models import SubscriptionCreate
from opscore.storage import storage_from_url

from .conftest import KEY, STORES, make_settings, store_url
from .event_receiver import EventReceiver
from .fakes import Behaviour
from .servers import wait_for
from .workflow_helpers import create, run, settle, task, template

EVENTS = {
    "events_allow_private_targets": True,  # the receiver is on loopback
    "event_retry_backoff_seconds": 0.05,
    "event_retry_max_backoff_seconds": 0.2,
}


@pytest.fixture
def receiver():
    receiver = EventReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(params=STORES)
def evented(request, fleet_factory, tmp_path):
    settings = make_settings(
        storage_url=store_url(request, request.param, tmp_path), default_max_attempts=1, **EVENTS
    )
    server, fleet = fleet_factory(settings)
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ) as c:
        yield c, fleet


def subscribe(client: httpx.Client, receiver: EventReceiver, *events: str) -> dict[str, Any]:
    response = client.post(
        "/v1/opscore/subscriptions", json={"url": receiver.url, "events": list(events)}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    receiver.secrets.append(created["secret"])
    return created


def deliveries(client: httpx.Client, subscription_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/v1/opscore/subscriptions/{subscription_id}/deliveries")
    assert page.status_code == 200, page.text
    return page.json()["items"]


def test_runs_dead_letters_and_approvals_reach_a_consumer_signed(evented, receiver) -> None:
    client, fleet = evented
    fleet.add("worker", Behaviour())
    fleet.add("breaker", Behaviour(kind="fail", failures=99, capabilities=["break"]))
    sub = subscribe(
        client, receiver, "run.completed", "run.failed", "task.dead_lettered", "approval.needed"
    )
    create(client, template("ok", task("a")))
    create(client, template("bad", task("b", agentCapability="break")))
    create(client, template("gate", {"taskId": "review", "kind": "approval"}))

    ok = run(client, "ok", {"n": 1})
    bad = run(client, "bad")
    gate = run(client, "gate")
    settle(client, ok)
    settle(client, bad)
    got = receiver.wait_for_types(
        "run.completed", "run.failed", "task.dead_lettered", "approval.needed"
    )

    by_type = {r["type"]: r["event"] for r in got}
    assert by_type["run.completed"]["data"]["sessionId"] == ok
    assert by_type["run.completed"]["data"]["status"] == "completed"
    assert by_type["run.failed"]["data"]["sessionId"] == bad
    assert by_type["task.dead_lettered"]["data"]["stepId"] == "b"
    needed = by_type["approval.needed"]["data"]
    assert needed["sessionId"] == gate and needed["approveUrl"].endswith("/approve")
    assert receiver.bad_signatures == 0
    assert len({r["delivery"] for r in receiver.received}) == len(receiver.received)
    log = wait_for(
        lambda: (
            (items := deliveries(client, sub["subscriptionId"]))
            and all(d["status"] == "delivered" for d in items)
            and items
        )
    )
    assert {d["event"]["type"] for d in log} == set(by_type)
    assert all(d["attempts"] == 1 and d["lastStatusCode"] == 200 for d in log)
    # the cancelled run is not subscribed to: nothing more arrives
    client.post(f"/v1/opscore/sessions/{gate}/cancel")
    assert "run.cancelled" not in receiver.types()


def test_a_receiver_that_fails_gets_the_delivery_again(evented, receiver) -> None:
    client, _ = evented
    sub = subscribe(client, receiver, "run.cancelled")
    receiver.fail_next = 2
    create(client, template("hold", {"taskId": "review", "kind": "approval"}))
    sid = run(client, "hold")
    client.post(f"/v1/opscore/sessions/{sid}/cancel")

    [got] = receiver.wait_for_types("run.cancelled")

    assert got["event"]["data"]["sessionId"] == sid
    [logged] = wait_for(
        lambda: [d for d in deliveries(client, sub["subscriptionId"]) if d["status"] == "delivered"]
    )
    assert logged["attempts"] == 3 and logged["lastError"] is None

    # re-delivery sends the same delivery again (same id), with fresh attempts
    again = client.post(
        f"/v1/opscore/subscriptions/{sub['subscriptionId']}/deliveries/"
        f"{logged['deliveryId']}/redeliver"
    )
    assert again.status_code == 200 and again.json()["status"] == "pending"
    wait_for(lambda: len(receiver.received) == 2)
    assert receiver.received[1]["delivery"] == logged["deliveryId"]


def test_a_delivery_that_keeps_failing_is_marked_failed_and_can_be_redelivered(
    server_factory, receiver
) -> None:
    server = server_factory(make_settings(event_delivery_attempts=2, **EVENTS))
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=10) as client:
        sub = subscribe(client, receiver, "agent.offline")
        receiver.fail_next = 5
        ping = client.post(f"/v1/opscore/subscriptions/{sub['subscriptionId']}/ping")
        assert ping.status_code == 202
        failed = wait_for(
            lambda: [
                d for d in deliveries(client, sub["subscriptionId"]) if d["status"] == "failed"
            ]
        )
        assert failed[0]["attempts"] == 2 and failed[0]["lastError"] == "HTTP 503"
        assert failed[0]["lastStatusCode"] == 503 and failed[0]["nextAttemptAt"] is None
        receiver.fail_next = 0
        url = f"/v1/opscore/subscriptions/{sub['subscriptionId']}/deliveries"
        client.post(f"{url}/{failed[0]['deliveryId']}/redeliver")
        [got] = receiver.wait_for_types("ping")
        assert got["event"]["type"] == "ping"


def test_agents_going_offline_and_coming_back_are_events(evented, receiver) -> None:
    client, _ = evented
    subscribe(client, receiver, "agent.offline", "agent.back")
    client.post("/v1/opscore/agents", json={"agentId": "a1", "agentName": "one"})

    def report(state: str, second: int) -> None:
        body = {"agentId": "a1", "state": state, "timestamp": f"2026-01-01T00:00:0{second}Z"}
        assert client.post("/v1/opscore/agent/a1/state", json=body).status_code == 202

    report("idle", 1)
    report("offline", 2)
    report("offline", 3)  # still offline: no second event
    report("idle", 4)
    got = receiver.wait_for_types("agent.offline", "agent.back")

    assert [r["type"] for r in got] == ["agent.offline", "agent.back"]
    assert got[0]["event"]["data"] == {
        "agentId": "a1",
        "agentName": "one",
        "reason": "reported by the agent",
    }


def test_subscriptions_are_managed_and_their_secret_shown_once(client) -> None:
    created = client.post(
        "/v1/opscore/subscriptions",
        json={"url": "https://93.184.215.14/hook", "events": ["run.failed"], "secret": "s" * 20},
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"] == "s" * 20 and body["secretHint"] == "ssss"
    sid = body["subscriptionId"]
    shown = client.get(f"/v1/opscore/subscriptions/{sid}").json()
    assert "secret" not in shown and shown["active"] is True
    listed = client.get("/v1/opscore/subscriptions").json()
    assert [s["subscriptionId"] for s in listed["items"]] == [sid]
    changed = client.patch(
        f"/v1/opscore/subscriptions/{sid}", json={"active": False, "events": ["run.completed"]}
    )
    assert changed.status_code == 200 and changed.json()["events"] == ["run.completed"]
    typo = client.patch(f"/v1/opscore/subscriptions/{sid}", json={"evnts": []})
    assert typo.status_code == 422 and "unknown field 'evnts'" in typo.json()["error"]["message"]
    unknown = client.post(
        "/v1/opscore/subscriptions", json={"url": "https://93.184.215.14/", "events": ["run.done"]}
    )
    assert unknown.status_code == 422
    assert client.delete(f"/v1/opscore/subscriptions/{sid}").status_code == 204
    assert client.get(f"/v1/opscore/subscriptions/{sid}").status_code == 404
    assert client.get(f"/v1/opscore/subscriptions/{sid}/deliveries").status_code == 404


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/hook",
        "http://localhost/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://100.64.0.1/",
    ],
)
def test_internal_targets_are_refused_unless_allowed(client, url: str) -> None:
    refused = client.post("/v1/opscore/subscriptions", json={"url": url, "events": ["run.failed"]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "EVENT_TARGET_REFUSED"


def test_a_url_that_is_not_http_or_does_not_resolve_is_refused(client) -> None:
    for url in ("ftp://example.com/x", "file:///etc/passwd", "http://no-such-host.invalid/"):
        response = client.post(
            "/v1/opscore/subscriptions", json={"url": url, "events": ["run.failed"]}
        )
        assert response.status_code == 422, url


@pytest.mark.parametrize("backend", ["sqlite", "redis", "postgresql"])
async def test_two_replicas_deliver_each_event_once(request, backend, tmp_path, receiver) -> None:
    url = store_url(request, backend, tmp_path)
    settings = Settings(_env_file=None, storage_url=url, api_key=KEY, **EVENTS)
    stores = [storage_from_url(url), storage_from_url(url)]
    for store in stores:
        await store.open()
    try:
        services = [SubscriptionService(s, settings) for s in stores]
        sub = await services[0].create(
            SubscriptionCreate(url=receiver.url, events=["run.completed"])
        )
        receiver.secrets.append(sub.secret)
        bus = EventBus(stores[0], settings, services[0])
        for i in range(30):
            await bus.publish("run.completed", {"n": i})
        senders = [
            DeliverySender(s, settings, svc) for s, svc in zip(stores, services, strict=True)
        ]
        for sender in senders:
            sender.start()
        try:
            await asyncio.to_thread(wait_for, lambda: len(receiver.received) >= 30, timeout=20)
            await asyncio.sleep(0.3)  # a second delivery of any of them would show by now
        finally:
            for sender in senders:
                await sender.stop()
        assert sorted(r["event"]["data"]["n"] for r in receiver.received) == list(range(30))
        log = await services[1].deliveries(sub.subscription_id, offset=0, limit=100)
        assert log.total == 30 and {d.status for d in log.items} == {"delivered"}
    finally:
        for store in stores:
            await store.close()


async def test_a_delivery_connects_only_to_the_addresses_it_checked(monkeypatch) -> None:
    """DNS rebinding: the connection goes to the address that passed the check, never to one
    the name answers a moment later (here: the system would say 127.0.0.1 for localhost)."""
    import ipaddress

    import httpcore

    from opscore.events import addresses

    async def public(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address("93.184.216.34")]

    monkeypatch.setattr(addresses, "_resolve", public)
    backend = addresses._CheckedBackend()
    asked: list[str] = []

    async def connect(host: str, port: int, **options: Any) -> Any:
        asked.append(host)
        raise httpcore.ConnectError("not in a test")

    monkeypatch.setattr(backend._inner, "connect_tcp", connect)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("localhost", 8000)
    assert asked == ["93.184.216.34"]


def test_a_name_that_turns_internal_after_the_check_gets_no_delivery(
    server_factory, receiver, monkeypatch
) -> None:
    import ipaddress

    from opscore.events import addresses

    answers = iter(["93.184.216.34"])  # public when the subscription is stored, then loopback

    async def rebinding(host: str, port: int) -> list[Any]:
        return [ipaddress.ip_address(next(answers, "127.0.0.1"))]

    monkeypatch.setattr(addresses, "_resolve", rebinding)
    server = server_factory(make_settings(event_delivery_attempts=1, event_delivery_timeout=2))
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}, timeout=10) as client:
        url = receiver.url.replace("127.0.0.1", "rebind.example")
        created = client.post(
            "/v1/opscore/subscriptions", json={"url": url, "events": ["run.failed"]}
        )
        assert created.status_code == 201, created.text
        sid = created.json()["subscriptionId"]
        assert client.post(f"/v1/opscore/subscriptions/{sid}/ping").status_code in (200, 202)
        failed = wait_for(
            lambda: [d for d in deliveries(client, sid) if d["status"] == "failed"], timeout=15
        )
    assert "internal address (127.0.0.1)" in failed[0]["lastError"]
    assert receiver.received == []
