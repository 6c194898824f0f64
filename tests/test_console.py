"""The operator console in Debian's Chromium (Playwright), at 1400 px and at 390 px, in light and
dark: every page, every action, what a viewer may not do, links and search by id, and live logs
that a watching console does not fill. Screenshots go to screenshots/console-*.png."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opscore.api import create_app

from .conftest import KEY, make_settings
from .fakes import Behaviour, FakeFleet
from .servers import ServerThread, wait_for
from .test_dashboard import SHOTS
from .test_security import KEYS, write_keys
from .workflow_helpers import create, run, settle, task, template

SIZES = {"wide": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}
SCHEMES = ("light", "dark")


def decision(step: str, kind: str, **fields: Any) -> dict[str, Any]:
    """An approval or signal step: no agent runs it."""
    return {"taskId": step, "name": step, "kind": kind, **fields}


class Console:
    """One Ops-Core with a fleet, a keys file (admin, operator, viewer) and runs in every state."""

    def __init__(self, tmp: Path) -> None:
        keys_file = tmp / "keys.yaml"
        write_keys(keys_file)
        self.server = ServerThread(
            create_app(make_settings(keys_file=keys_file, events_allow_private_targets=True))
        ).start()
        self.fleet = FakeFleet(self.server.url, KEY).start()
        self.api = httpx.Client(base_url=self.server.url, headers={"X-API-Key": KEY}, timeout=15)
        for i in range(3):
            self.fleet.add(f"agent-{i}", Behaviour(work_seconds=0.05))
        self.fleet.add("flaky", Behaviour(kind="fail", failures=10**6, capabilities=["flaky"]))
        create(
            self.api,
            template(
                "digest",
                task("fetch", parameters={"topic": "${input.topic}"}),
                task(
                    "summarize", dependsOn=["fetch"], parameters={"text": "${tasks.fetch.result}"}
                ),
                task("publish", dependsOn=["summarize"]),
            ),
        )
        create(
            self.api,
            template("breaks", task("x", agentCapability="flaky", retry={"maxAttempts": 1})),
        )
        create(
            self.api,
            template(
                "reviewed",
                task("draft"),
                decision("review", "approval", dependsOn=["draft"], wait={"prompt": "Ship it?"}),
                task("ship", dependsOn=["review"]),
            ),
        )
        create(
            self.api,
            template(
                "paid", decision("bill", "signal", wait={"signal": "paid", "prompt": "Paid?"})
            ),
        )
        self.done = run(self.api, "digest", {"topic": "agents"})
        settle(self.api, self.done)

    def failed_run(self) -> str:
        sid = run(self.api, "breaks")
        settle(self.api, sid)
        return sid

    def waiting_run(self, workflow: str = "reviewed") -> str:
        sid = run(self.api, workflow)
        wait_for(
            lambda: any(
                t["status"] == "waiting"
                for t in self.api.get(f"/v1/opscore/sessions/{sid}").json()["tasks"]
            ),
            timeout=20,
        )
        return sid

    def close(self) -> None:
        self.api.close()
        self.fleet.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def console(tmp_path_factory: Any) -> Iterator[Console]:
    env = Console(tmp_path_factory.mktemp("console"))
    yield env
    env.close()


def open_console(
    browser: Any, console: Console, *, size: str = "wide", scheme: str = "light", key: str = KEY
) -> Any:
    page = browser.new_page(viewport=SIZES[size], color_scheme=scheme)
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.goto(f"{console.server.url}/dashboard")
    page.fill("#key", key)
    page.click("#login-form button")
    page.wait_for_selector("#nav:not([hidden])")
    return page


def goto(page: Any, console: Console, hash_: str, ready: str) -> None:
    page.goto(f"{console.server.url}/dashboard{hash_}")
    page.wait_for_selector(ready, timeout=15_000)


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)


def no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"] + 1, f"page is {width}px wide"


@pytest.mark.browser
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_page_renders_at_both_widths_in_both_themes(
    browser: Any, console: Console, size: str, scheme: str
) -> None:
    failed = console.failed_run()
    waiting = console.waiting_run()
    page = open_console(browser, console, size=size, scheme=scheme)
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert (background == "rgb(15, 20, 25)") == (scheme == "dark"), background
    tour = [
        ("overview", "#/overview", ".card .big"),
        ("runs", "#/runs", f"a[href='#/runs/{failed}']"),
        ("run-failed", f"#/runs/{failed}", "#gantt .track[data-step='x'] .bar"),
        ("run-waiting", f"#/runs/{waiting}", "text=Waiting for a decision"),
        ("agents", "#/agents", "a[href='#/agents/agent-0']"),
        ("agent", "#/agents/agent-0", "text=State history"),
        ("templates", "#/templates", "a[href='#/templates/digest']"),
        ("template-graph", "#/templates/digest", "svg.graph g[data-step='publish']"),
        ("waiting", "#/waiting", f"a[href='#/runs/{waiting}']"),
        ("dead-letters", "#/dead-letters", f"a[href='#/runs/{failed}']"),
        ("schedules", "#/schedules", "h2:has-text('Schedules')"),
        ("webhooks", "#/webhooks", "h2:has-text('Webhooks')"),
        ("logs", "#/logs", "#log-lines .log"),
    ]
    for name, hash_, ready in tour:
        goto(page, console, hash_, ready)
        if size == "phone":
            no_sideways_scroll(page)
        shot(page, f"{name}-{size}-{scheme}")
    assert page.errors == []
    page.close()


def confirm(page: Any, text: str | None = None, fill: str | None = None) -> None:
    """Answer the console's confirmation dialog (optionally typing into its field)."""
    page.wait_for_selector("dialog[open]")
    if fill is not None:
        page.fill("dialog[open] input, dialog[open] textarea", fill)
    if text is not None:
        assert text in page.inner_text("dialog[open]")
    page.click("dialog[open] button[value='ok']")


def task_of(console: Console, sid: str, step: str) -> dict[str, Any]:
    detail = console.api.get(f"/v1/opscore/sessions/{sid}").json()
    return next(t for t in detail["tasks"] if t["stepId"] == step)


@pytest.mark.browser
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_operators_hour(browser: Any, console: Console, size: str, scheme: str) -> None:
    """Open a link to a failed run, read why, retry it; re-drive a dead letter; approve, reject
    and signal waiting steps; pause, resume and run a schedule; trigger a template with a
    payload; cancel a running run; ping a webhook and redeliver; find a task by its id."""
    api = console.api
    page = open_console(browser, console, size=size, scheme=scheme)

    # a link to a failed run: why it failed, then retry (a confirmation first)
    failed = console.failed_run()
    goto(page, console, f"#/runs/{failed}", "text=Why it failed")
    assert "boom" in page.inner_text("main")
    page.click("button:has-text('Retry run')")
    confirm(page, text="Re-drive x")
    page.wait_for_selector("#toast :text('Run retried')")
    wait_for(lambda: len(task_of(console, failed, "x")["history"]) == 2, timeout=15)
    shot(page, f"action-retried-{size}-{scheme}")

    # the dead-letter list re-drives too
    other = console.failed_run()
    goto(page, console, "#/dead-letters", f"a[href='#/runs/{other}']")
    page.locator("tr", has=page.locator(f"a[href='#/runs/{other}']")).locator(
        "button:has-text('Re-drive')"
    ).click()
    confirm(page)
    page.wait_for_selector("#toast :text('Re-driven')")
    wait_for(lambda: len(task_of(console, other, "x")["history"]) == 2, timeout=15)

    # approve one waiting step, reject another
    approve_me = console.waiting_run()
    goto(page, console, f"#/runs/{approve_me}", "button:has-text('Approve')")
    shot(page, f"action-approval-{size}-{scheme}")
    page.click("button:has-text('Approve')")
    confirm(page, fill="looks right")
    page.wait_for_selector("#toast :text('Approved')")
    assert settle(api, approve_me)["status"] == "completed"
    review = task_of(console, approve_me, "review")
    assert review["decision"]["comment"] == "looks right"
    assert review["decision"]["decidedBy"] == "admin-1"
    reject_me = console.waiting_run()
    goto(page, console, "#/waiting", f"a[href='#/runs/{reject_me}']")
    page.locator(".toolbar", has=page.locator(f"a[href='#/runs/{reject_me}']")).locator(
        "button:has-text('Reject')"
    ).click()
    confirm(page, fill="not yet")
    page.wait_for_selector("#toast :text('Rejected')")
    assert settle(api, reject_me)["status"] == "failed"

    # a signal with a payload
    paid = console.waiting_run("paid")
    goto(page, console, f"#/runs/{paid}", "button:has-text('Send signal paid')")
    page.click("button:has-text('Send signal paid')")
    confirm(page, fill='{"amount": 42}')
    page.wait_for_selector("#toast :text('Signal paid sent')")
    assert settle(api, paid)["status"] == "completed"
    assert task_of(console, paid, "bill")["result"]["payload"] == {"amount": 42}

    # pause, resume and run a schedule now
    schedule_id = f"hourly-{size}-{scheme}"
    api.post(
        "/v1/opscore/schedules",
        json={"scheduleId": schedule_id, "workflowId": "digest", "intervalSeconds": 3600},
    ).raise_for_status()
    row = page.locator("tr", has=page.locator(f"code:text-is('{schedule_id}')"))
    goto(page, console, "#/schedules", f"code:text-is('{schedule_id}')")
    row.locator("button:has-text('Pause')").click()
    confirm(page, text="Pause")
    wait_for(lambda: api.get(f"/v1/opscore/schedules/{schedule_id}").json()["paused"], timeout=10)
    row.locator("button:has-text('Resume')").click()
    wait_for(
        lambda: not api.get(f"/v1/opscore/schedules/{schedule_id}").json()["paused"], timeout=10
    )
    row.locator("button:has-text('Run now')").click()
    wait_for(
        lambda: api.get(f"/v1/opscore/schedules/{schedule_id}").json()["lastSessionId"],
        timeout=10,
    )
    shot(page, f"action-schedules-{size}-{scheme}")

    # trigger a template with a payload: the console lands on the new run
    goto(page, console, "#/templates/digest", "svg.graph")
    page.click("button:has-text('Trigger a run')")
    confirm(page, fill='{"topic": "from the console"}')
    page.wait_for_url("**/dashboard#/runs/*", timeout=10_000)
    sid = page.url.split("#/runs/")[1]
    assert settle(api, sid)["initialPayload"] == {"topic": "from the console"}
    page.wait_for_selector("#gantt .track[data-step='publish'] .bar.completed", timeout=15_000)

    # cancel a run while its agent works
    slow_name = f"slow-{size}-{scheme}"
    console.fleet.add(slow_name, Behaviour(kind="hang", capabilities=[slow_name]))
    create(api, template(slow_name, task("wait", agentCapability=slow_name)))
    slow = run(api, slow_name)
    wait_for(lambda: task_of(console, slow, "wait")["status"] in ("dispatched", "running"))
    goto(page, console, f"#/runs/{slow}", "button:has-text('Cancel run')")
    page.click("button:has-text('Cancel run')")
    confirm(page, text="Cancel this run?")
    page.wait_for_selector("#toast :text('Run cancelled')")
    assert settle(api, slow)["status"] == "cancelled"

    # a webhook: ping it, see the delivery, send it again
    hook = api.post(
        "/v1/opscore/subscriptions",
        json={"url": "http://127.0.0.1:9/hook", "events": ["run.failed"]},
    ).json()
    goto(page, console, "#/webhooks", f"a[href='#/webhooks/{hook['subscriptionId']}']")
    page.locator("tr", has=page.locator(f"a[href='#/webhooks/{hook['subscriptionId']}']")).locator(
        "button:has-text('Ping')"
    ).click()
    page.wait_for_selector("#toast :text('Ping sent')")
    goto(page, console, f"#/webhooks/{hook['subscriptionId']}", "button:has-text('Redeliver')")
    assert page.locator("td:text-is('ping')").count() >= 1  # each delivery names its event
    page.locator("button:has-text('Redeliver')").first.click()
    page.wait_for_selector("#toast :text('Queued again')")
    shot(page, f"action-webhook-{size}-{scheme}")

    # search by a task's id: its run, with the task open
    task_id = task_of(console, approve_me, "ship")["taskId"]
    page.fill("#search-id", task_id)
    page.press("#search-id", "Enter")
    page.wait_for_selector(f"details#task-{task_id}[open]")
    assert page.url.endswith(f"#/runs/{approve_me}?task={task_id}")
    page.reload()  # a link survives a reload
    page.wait_for_selector(f"details#task-{task_id}[open]")
    if size == "phone":
        no_sideways_scroll(page)
    page.fill("#search-id", "no-such-id")
    page.press("#search-id", "Enter")
    page.wait_for_selector('#toast :text("no-such-id")')
    assert page.errors == []
    page.close()


@pytest.mark.browser
def test_a_viewer_sees_no_write_buttons_and_the_api_refuses_anyway(
    browser: Any, console: Console
) -> None:
    failed = console.failed_run()
    waiting = console.waiting_run()
    page = open_console(browser, console, key=KEYS["viewer"])
    assert "viewer" in page.inner_text("#who")
    for hash_, ready in [
        (f"#/runs/{failed}", "text=Why it failed"),
        (f"#/runs/{waiting}", "text=Waiting for a decision"),
        ("#/dead-letters", f"a[href='#/runs/{failed}']"),
        ("#/templates/digest", "svg.graph"),
        ("#/agents/agent-0", "text=State history"),
    ]:
        goto(page, console, hash_, ready)
        visible = [b.inner_text() for b in page.locator("main button").all() if b.is_visible()]
        assert [b for b in visible if b not in ("Previous", "Next")] == [], hash_
    shot(page, "viewer-run")
    viewer = httpx.Client(base_url=console.server.url, headers={"X-API-Key": KEYS["viewer"]})
    task_id = task_of(console, failed, "x")["taskId"]
    refused = viewer.post(f"/v1/opscore/dead-letters/{task_id}/redrive")
    assert refused.status_code == 403
    viewer.close()
    assert page.errors == []
    page.close()


@pytest.mark.browser
def test_live_logs_are_newest_first_filter_as_typed_and_polls_stay_quiet(
    browser: Any, console: Console
) -> None:
    api = console.api
    path = f"/v1/opscore/sessions/{console.done}"

    def access_lines() -> int:
        records = api.get("/v1/opscore/logs", params={"logger": "opscore.access", "limit": 500})
        assert records.status_code == 200, records.text
        return sum(1 for r in records.json()["items"] if r.get("path") == path)

    page = open_console(browser, console)
    polls: list[str] = []
    page.on(
        "request",
        lambda r: (
            polls.append(r.url) if r.headers.get("x-opscore-poll") and path in r.url else None
        ),
    )
    before = access_lines()
    goto(page, console, f"#/runs/{console.done}", "#gantt")
    # Playwright hands events over while it is called: wait in the page, not in Python
    wait_for(lambda: page.wait_for_timeout(200) or len(polls) >= 3, timeout=30)
    # the page's first read is logged; its periodic reads are not (DEBUG)
    assert access_lines() - before <= 1

    goto(page, console, "#/logs", "#log-lines .log")
    page.fill("input[aria-label='agentId']", "agent-2")  # no Enter: filters apply as typed
    api.post(
        "/v1/opscore/agent/agent-2/state",
        json={"agentId": "agent-2", "timestamp": _now(), "state": "busy"},
    )
    page.wait_for_selector("#log-lines .log:has-text('agent-2')", timeout=15_000)
    wait_for(
        lambda: all("agent-2" in t for t in page.locator("#log-lines .log").all_inner_texts()),
        timeout=10,
    )
    reports = "#log-lines .log:has-text('/v1/opscore/agent/agent-2/state 202')"
    seen = page.locator(reports).count()
    api.post(
        "/v1/opscore/agent/agent-2/state",
        json={"agentId": "agent-2", "timestamp": _now(1), "state": "idle"},
    )
    wait_for(lambda: page.wait_for_timeout(100) or page.locator(reports).count() > seen, timeout=15)
    texts = page.locator("#log-lines .log").all_inner_texts()
    assert "/v1/opscore/agent/agent-2/state 202" in texts[0], "the newest record is on top"
    stamps = [t.split(" ")[0] for t in texts]
    assert stamps == sorted(stamps, reverse=True), "newest first"
    shot(page, "logs-newest-first")
    assert page.errors == []
    page.close()


def _now(offset: float = 0) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(time.time() + offset, UTC).isoformat()


def test_me_says_the_role_and_activity_counts_the_last_hour(console: Console) -> None:
    viewer = httpx.Client(base_url=console.server.url, headers={"X-API-Key": KEYS["viewer"]})
    me = viewer.get("/v1/opscore/me").json()
    assert me["role"] == "viewer" and me["scopes"] == ["read"] and me["version"]
    assert me["name"] == "dashboard-viewer" and KEYS["viewer"] not in str(me)
    minutes = viewer.get("/v1/opscore/activity").json()["minutes"]
    assert len(minutes) == 60 and minutes[-1]["at"] > minutes[0]["at"]
    assert sum(m["completed"] for m in minutes) >= 3  # the digest run's three steps
    assert viewer.get("/v1/opscore/activity", params={"minutes": 0}).status_code == 422
    viewer.close()
    assert httpx.get(f"{console.server.url}/v1/opscore/me").status_code == 401


def test_activity_buckets_by_minute_on_an_injected_clock() -> None:
    import asyncio

    from opscore.observe.activity import Activity

    now = [600.0]  # 00:10:00
    activity = Activity(clock=lambda: now[0])
    activity.count("completed", 2)
    now[0] += 61  # the next minute
    activity.count("failed")
    depth = [5]

    async def queue() -> int:
        return depth[0]

    asyncio.run(activity.sample(queue))
    depth[0] = 9
    asyncio.run(activity.sample(queue))  # within 10 s of the last sample: not asked again
    series = activity.last(3)
    assert [m["completed"] for m in series] == [0, 2, 0]
    assert [m["failed"] for m in series] == [0, 0, 1]
    assert [m["queue_depth"] for m in series] == [None, None, 5]
    now[0] += 3600  # an hour later everything has aged out
    assert all(m["completed"] == 0 for m in activity.last())
