"""The web dashboard: served without a key, with security headers, and driven in a real
headless Chromium (Debian's package) by Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

from .conftest import KEY, now_iso
from .fakes import Behaviour
from .servers import wait_for
from .workflow_helpers import create, run, settle, task, template

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[1] / "screenshots"


def test_dashboard_is_served_with_security_headers(anon: httpx.Client) -> None:
    page = anon.get("/dashboard")
    assert page.status_code == 200 and "<title>Ops-Core dashboard</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert anon.get("/dashboard/app.js").headers["content-type"].startswith("text/javascript")
    assert anon.get("/dashboard/../opscore/config.py").status_code in (404, 422)
    assert anon.get("/dashboard/secrets.txt").status_code == 422
    assert KEY not in page.text


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("Debian's chromium is required in CI (apt-get install chromium)")
        pytest.skip("chromium not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.mark.browser
def test_dashboard_end_to_end_in_chromium(browser, fleet_factory) -> None:
    SHOTS.mkdir(exist_ok=True)
    server, fleet = fleet_factory()
    for i in range(3):
        fleet.add(f"agent-{i}", Behaviour(work_seconds=0.3))
    fleet.add("flaky", Behaviour(kind="fail", failures=1, capabilities=["flaky"]))
    with httpx.Client(base_url=server.url, headers={"X-API-Key": KEY}) as client:
        create(
            client,
            template("demo", task("a", nextTaskId="b"), task("b", nextTaskId="c"), task("c")),
        )
        create(
            client,
            template(
                "retrying",
                task(
                    "x", agentCapability="flaky", retry={"maxAttempts": 2, "backoffSeconds": 0.05}
                ),
            ),
        )
        settle(client, run(client, "demo"))
        retry_sid = run(client, "retrying")
        settle(client, retry_sid)

        page = browser.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server.url}/dashboard")

        # Given a wrong key, the prompt says so; with the right one the agents appear.
        page.fill("#key", "wrong-key")
        page.click("#login-form button")
        page.wait_for_selector("#login-error:has-text('not accepted')")
        page.fill("#key", KEY)
        page.click("#login-form button")
        page.wait_for_selector("#agents-table tbody tr[data-agent-id='agent-0']")
        assert not page.is_visible("#login") and page.is_visible("#agents-table")
        assert page.locator("#agents-table tbody tr").count() == 4
        page.screenshot(path=str(SHOTS / "dashboard-agents.png"))

        # When an agent changes state, the table follows within its refresh.
        client.post(
            "/v1/opscore/agent/agent-1/state",
            json={"agentId": "agent-1", "timestamp": now_iso(), "state": "error"},
        )
        page.wait_for_selector("tr[data-agent-id='agent-1'] .s-error", timeout=10_000)

        # The session timeline shows a bar per attempt, coloured by outcome.
        page.click("#tabs button[data-tab='sessions']")
        page.wait_for_selector(f"#sessions-table tr[data-session-id='{retry_sid}']")
        page.click(f"#sessions-table tr[data-session-id='{retry_sid}']")
        page.wait_for_selector("#gantt .track[data-step='x'] .bar.agent_error")
        assert page.locator("#gantt .track[data-step='x'] .bar.completed").count() == 1
        page.screenshot(path=str(SHOTS / "dashboard-timeline.png"))

        # The live log view filters and streams new records.
        page.click("#tabs button[data-tab='logs']")
        page.fill("#log-agent", "agent-2")
        page.dispatch_event("#log-agent", "change")
        page.wait_for_timeout(300)
        client.post(
            "/v1/opscore/agent/agent-2/state",
            json={"agentId": "agent-2", "timestamp": now_iso(1), "state": "busy"},
        )
        page.wait_for_selector(
            "#log-lines .log:has-text('/v1/opscore/agent/agent-2/state 202')", timeout=10_000
        )
        texts = page.locator("#log-lines .log").all_inner_texts()
        assert texts and all("agent-2" in t for t in texts)
        page.screenshot(path=str(SHOTS / "dashboard-logs.png"))
        assert not errors, errors
    assert wait_for(lambda: (SHOTS / "dashboard-logs.png").exists())


def test_api_docs_load_nothing_from_outside(anon: httpx.Client) -> None:
    for path in ("/docs", "/redoc"):
        page = anon.get(path)
        assert page.status_code == 200
        assert "cdn.jsdelivr" not in page.text and "fonts.googleapis" not in page.text
        assert "/docs-assets/" in page.text
    script = anon.get("/docs-assets/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
    assert script.headers["content-type"].startswith("text/javascript")
    assert anon.get("/docs-assets/redoc.standalone.js").status_code == 200
    assert anon.get("/docs-assets/swagger-ui.css").status_code == 200
    assert anon.get("/docs-assets/../pyproject.toml").status_code == 404
    assert anon.get("/docs-assets/secrets.txt").status_code in (404, 422)


@pytest.mark.browser
def test_swagger_ui_renders_with_the_internet_cut_off(browser, server) -> None:
    page = browser.new_page()
    outside: list[str] = []

    def only_loopback(route) -> None:
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_loopback)
    page.goto(f"{server.url}/docs")
    page.wait_for_selector(".opblock-summary", timeout=20_000)
    assert page.locator(".opblock").count() > 50
    page.screenshot(path=str(SHOTS / "docs-offline.png"))
    assert outside == []
    page.close()
