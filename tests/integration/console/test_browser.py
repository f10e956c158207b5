"""The console in headless Debian Chromium (Playwright, no browser download): a radiologist,
an emergency physician and an IT administrator log in and see what their roles allow.
Screenshots are saved under the test's tmp dir (``screenshots/``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from deployments.orthanc import free_port
from tests.fix_slapd import USERS
from tests.integration.console.conftest import (
    PATIENT_IDENTIFIERS,
    PRIMARY_FINDING,
    SECOND_FINDING,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def console_url(console_site) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            console_site.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed (make setup installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


def log_in(browser, base: str, username: str, target: str = "/"):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(base + target)
    assert "/login" in page.url  # not logged in: the login page
    page.fill("#username", username)
    page.fill("#password", USERS[username][1])
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return page


def test_radiologist_emergency_physician_and_it_in_chromium(
    console_site, console_url, browser, tmp_path
):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    critical = console_site.studies["critical"]
    name, mrn, accession, birth_date = PATIENT_IDENTIFIERS["critical"]

    # Radiologist: the worklist, then the study with every finding and the overlay
    page = log_in(browser, console_url, "rad")
    assert page.locator("table").inner_text().count("Critical") >= 1
    assert "91%" in page.inner_text("main")
    page.screenshot(path=str(shots / "radiologist-worklist.png"), full_page=True)
    page.click(f"a[href='/studies/{critical}']")
    page.wait_for_load_state("networkidle")
    text = page.inner_text("main")
    assert PRIMARY_FINDING in text and SECOND_FINDING in text and "91.4%" in text
    assert birth_date in text and "Threshold" in text
    overlay = page.locator("img[alt^='Grad-CAM']")
    assert overlay.count() == 1
    assert overlay.evaluate("img => img.complete && img.naturalWidth") == 256
    page.screenshot(path=str(shots / "radiologist-study.png"), full_page=True)
    page.goto(console_url + "/system")
    assert "Not allowed" in page.inner_text("main")
    page.context.close()

    # Emergency physician: tier and the primary finding only, then acknowledges
    page = log_in(browser, console_url, "surg1")
    text = page.inner_text("main")
    assert PRIMARY_FINDING in text and "Critical" in text and "Crowley, Carla" in text
    assert SECOND_FINDING not in text and "91" not in text
    assert [a.inner_text() for a in page.locator("header a").all()] == ["Worklist"]
    page.screenshot(path=str(shots / "emergency-worklist.png"), full_page=True)
    page.click("text=Acknowledge")
    page.wait_for_load_state("networkidle")
    assert "Acknowledging as Dr Sam Surgeon" in page.inner_text("main")
    page.screenshot(path=str(shots / "emergency-acknowledge.png"), full_page=True)
    page.click("button.ack")
    page.wait_for_load_state("networkidle")
    assert "Acknowledged" in page.inner_text("h1")
    page.screenshot(path=str(shots / "emergency-acknowledged.png"), full_page=True)
    page.goto(f"{console_url}/studies/{critical}")
    assert "Not allowed" in page.inner_text("main")
    page.context.close()

    # IT administrator: system health and audit, no patient data
    page = log_in(browser, console_url, "itadmin")
    assert page.url.endswith("/system")
    text = page.inner_text("body")
    assert "Outboxes" in text and "hl7_outbox" in text and "acknowledged: 1" in text
    for value in (name, "Crowley", mrn, accession, birth_date, PRIMARY_FINDING):
        assert value not in page.content()
    page.screenshot(path=str(shots / "it-system.png"), full_page=True)
    page.goto(console_url + "/audit")
    page.screenshot(path=str(shots / "it-audit.png"), full_page=True)
    page.goto(console_url + "/")
    assert "Not allowed" in page.inner_text("main")
    page.click("text=Log out")
    page.wait_for_load_state("networkidle")
    assert "/login" in page.url
    page.context.close()

    # Department head: analytics as plots, de-identified
    page = log_in(browser, console_url, "head")
    assert page.url.endswith("/analytics")
    assert page.locator("svg").count() == 5
    for value in (name, "Crowley", mrn, accession, birth_date):
        assert value not in page.content()
    page.screenshot(path=str(shots / "head-analytics.png"), full_page=True)
    page.context.close()
    print(f"screenshots in {shots}")
