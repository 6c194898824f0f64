"""The web dashboard: served without a key, with security headers, and driven in a real
headless Chromium (Debian's package) by Playwright."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from .conftest import KEY

SHOTS = Path(__file__).resolve().parents[1] / "screenshots"


def test_dashboard_is_served_with_security_headers(anon: httpx.Client) -> None:
    page = anon.get("/dashboard")
    assert page.status_code == 200 and "<title>Ops-Core console</title>" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["x-content-type-options"] == "nosniff"
    for module in ("app.js", "ui.js", "runs.js", "fleet.js", "work.js", "logs.js"):
        assert (
            anon.get(f"/dashboard/{module}").headers["content-type"].startswith("text/javascript")
        )
    assert anon.get("/dashboard/../opscore/config.py").status_code in (404, 422)
    assert anon.get("/dashboard/secrets.txt").status_code == 422
    assert KEY not in page.text


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
