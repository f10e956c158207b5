"""The Prefect UI served on a port other than 4200 asks its own server: `/ui-settings` and
the runs page in a real headless Chromium (Debian's, no browser download)."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_ui_settings_name_the_servers_own_port(prefect_api_url):
    assert not prefect_api_url.startswith("http://127.0.0.1:4200/")
    settings = httpx.get(prefect_api_url.removesuffix("/api") + "/ui-settings", timeout=10).json()
    assert settings["api_url"] == prefect_api_url


def _a_flow_run(api: str, name: str) -> None:
    flow = httpx.post(f"{api}/flows/", json={"name": "ui-check"}, timeout=10).json()
    for _attempt in range(5):  # the test server's SQLite answers 503 when busy
        created = httpx.post(
            f"{api}/flow_runs/",
            json={"flow_id": flow["id"], "name": name, "state": {"type": "COMPLETED"}},
            timeout=10,
        )
        if created.status_code != 503:
            break
        time.sleep(1)
    created.raise_for_status()


def test_runs_page_in_chromium_shows_runs(prefect_api_url, tmp_path):
    assert shutil.which(CHROMIUM), "Debian chromium is not installed (make setup installs it)"
    sync_api = pytest.importorskip("playwright.sync_api")
    _a_flow_run(prefect_api_url, "CR SUICHECK0000 gen 1")
    screenshot = tmp_path / "prefect-runs.png"
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            asked: list[str] = []
            page.on("request", lambda request: asked.append(request.url))
            page.goto(prefect_api_url.removesuffix("/api") + "/runs", timeout=60_000)
            page.get_by_text("CR SUICHECK0000 gen 1").first.wait_for(timeout=60_000)
            page.screenshot(path=str(screenshot), full_page=False)
            body = page.inner_text("body")
        finally:
            browser.close()
    assert "Can't connect to Server API" not in body
    api_calls = [url for url in asked if "/api/" in url]
    assert api_calls and all(url.startswith(prefect_api_url) for url in api_calls)
    assert screenshot.stat().st_size > 10_000
