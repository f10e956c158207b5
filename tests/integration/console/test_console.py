"""The console against a real slapd and PostgreSQL: the role x route matrix, logins, the
directory down, sessions and acknowledgement by a logged-in person."""

from __future__ import annotations

import re

import pytest

from integrations.console.sessions import SESSION_COOKIE
from integrations.db.escalations import EscalationStore
from tests.integration.console.conftest import (
    FINDING_TEXTS,
    PATIENT_IDENTIFIERS,
    PRIMARY_FINDING,
    SECOND_FINDING,
)

IDENTIFIERS = [value for values in PATIENT_IDENTIFIERS.values() for value in values]
# DICOM PN "Crowley^Carla" is shown as it is stored; the parts must not leak either.
IDENTIFIER_PARTS = [*IDENTIFIERS, "Crowley", "Rutherford"]

PAGES = ["/", "/studies/{critical}", "/analytics", "/system", "/audit"]
APIS = ["/api/worklist", "/api/studies/{critical}", "/api/analytics", "/api/system", "/api/audit"]
OVERLAY = "/studies/{critical}/overlays/chest-xray/0.png"

# user -> routes allowed (everything else is 403)
ALLOWED = {
    "rad": {"/", "/studies/{critical}", "/analytics", OVERLAY},
    "erdoc": {"/"},
    "tech": {"/"},
    "head": {"/analytics"},
    "itadmin": {"/system", "/audit"},
    "both": {"/", "/system", "/audit"},  # emergency physician + IT administrator
}


def api_of(page: str) -> str:
    return "/api/worklist" if page == "/" else "/api" + page


def sees_no(texts: list[str] | tuple[str, ...], body: str, who: str, route: str) -> None:
    leaked = [text for text in texts if text.lower() in body.lower()]
    assert not leaked, f"{who} saw {leaked} at {route}"


@pytest.mark.parametrize("user", sorted(ALLOWED))
def test_role_route_matrix(console_site, user):
    client = console_site.login(user)
    studies = console_site.studies
    for template in [*PAGES, OVERLAY, *[api_of(p) for p in PAGES]]:
        route = template.format(**studies)
        page_template = template if not template.startswith("/api") else None
        if template.startswith("/api"):
            page_template = "/" if template == "/api/worklist" else template.removeprefix("/api")
        expected = 200 if page_template in ALLOWED[user] else 403
        answer = client.get(route)
        assert answer.status_code == expected, (user, route, answer.status_code)
        body = answer.content.decode("latin-1")
        if user in {"head", "itadmin"}:
            sees_no(IDENTIFIER_PARTS, body, user, route)
        if user in {"tech", "itadmin"}:
            sees_no(FINDING_TEXTS, body, user, route)
        if user in {"erdoc", "both"}:  # the primary finding only: no other, no probability
            sees_no(FINDING_TEXTS[1:], body, user, route)
        if user == "head" and expected == 200:
            sees_no(("MRN", "ACC-", "1961", "1979"), body, user, route)

    # what the allowed pages show
    worklist = client.get("/api/worklist")
    if user == "rad":
        critical = next(s for s in worklist.json()["studies"] if s["key"] == studies["critical"])
        assert critical["tier"] == "Critical" and critical["primary_finding"] == PRIMARY_FINDING
        assert critical["primary_probability"] == pytest.approx(0.9137)
        study = client.get(f"/api/studies/{studies['critical']}").json()
        findings = {f["label"]: f for f in study["analyses"][0]["findings"]}
        assert findings[SECOND_FINDING]["probability"] == pytest.approx(0.7713)
        assert findings[SECOND_FINDING]["threshold"] == 0.5
        assert study["patient_birth_date"] == "19610203"
        assert study["escalations"][0]["finding"] == PRIMARY_FINDING
        overlay = client.get(OVERLAY.format(**studies))
        assert overlay.headers["content-type"] == "image/png"
        assert overlay.content[:8] == b"\x89PNG\r\n\x1a\n"
    if user in {"erdoc", "both"}:
        items = {s["key"]: s for s in worklist.json()["studies"]}
        critical = items[studies["critical"]]
        assert critical["tier"] == "Critical" and critical["primary_finding"] == PRIMARY_FINDING
        assert "primary_probability" not in critical
        assert critical["acknowledge"] and critical["acknowledge"][0].startswith("/ack/")
        assert "Crowley, Carla" in client.get("/").text
    if user == "tech":
        items = worklist.json()["studies"]
        assert {s["status"] for s in items} == {"results stored"}
        assert all("tier" not in s and "primary_finding" not in s for s in items)
    if user == "head":
        analytics = client.get("/api/analytics").json()
        assert sum(day["studies"] for day in analytics["daily"]) == 2
        assert sum(day["critical"] for day in analytics["daily"]) == 1
        assert "<svg" in client.get("/analytics").text
    if user in {"itadmin", "both"}:
        system = client.get("/api/system").json()
        assert system["escalations"] == {"notified": 1}
        assert "hl7_outbox" in system["outboxes"]


def test_not_logged_in_gets_401_for_the_api_and_the_login_page_otherwise(console_site):
    client = console_site.client()
    for template in PAGES:
        route = template.format(**console_site.studies)
        answer = client.get(route)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")
        assert client.get(api_of(template).format(**console_site.studies)).status_code == 401
        assert console_site.studies["critical"] not in client.get(route).text
    assert client.get(OVERLAY.format(**console_site.studies)).status_code == 303
    assert client.get("/openapi.json").json()["info"]["title"] == "pacsflow console"
    # the login page takes the person back where they were going
    answer = client.post(
        "/login",
        data={"username": "itadmin", "password": "itpw", "next": "/system"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/system"


def test_login_refusals_and_the_session_cookie(console_site):
    client = console_site.client()
    wrong = client.post("/login", data={"username": "rad", "password": "nope"})
    assert wrong.status_code == 401 and "wrong password" in wrong.text
    assert SESSION_COOKIE not in wrong.cookies
    unknown = client.post("/login", data={"username": "ghost", "password": "x"})
    assert unknown.status_code == 401 and "wrong password" in unknown.text
    empty = client.post("/login", data={"username": "rad", "password": ""})
    assert empty.status_code == 401
    nogroup = client.post("/login", data={"username": "nobody", "password": "nobodypw"})
    assert nogroup.status_code == 403 and "no group" in nogroup.text
    assert SESSION_COOKIE not in nogroup.cookies

    good = client.post("/login", data={"username": "rad", "password": "radpw"})
    assert good.status_code == 303
    header = good.headers["set-cookie"]
    assert header.startswith(SESSION_COOKIE + "=")
    assert "HttpOnly" in header and "SameSite=lax" in header
    # a forged cookie is no session
    forged = console_site.client()
    forged.cookies.set(SESSION_COOKIE, header.split(";")[0].split("=", 1)[1][:-3] + "AAA")
    assert forged.get("/api/worklist").status_code == 401
    # logout ends it
    assert client.post("/logout").status_code == 303
    assert client.get("/api/worklist").status_code == 401
    # a POST from another site is refused
    evil = console_site.client()
    refused = evil.post(
        "/login",
        data={"username": "rad", "password": "radpw"},
        headers={"Origin": "https://evil.example"},
    )
    assert refused.status_code == 403


@pytest.mark.parametrize(
    ("cookie_secure", "base_url", "secure"),
    [
        ("auto", "https://console.hospital.test", True),
        ("auto", "http://console.hospital.test", True),
        ("auto", "http://127.0.0.1:8480", False),  # a browser on the console's own machine
        (True, "http://127.0.0.1:8480", True),
        (False, "http://console.hospital.test", False),
    ],
)
def test_cookies_are_secure_except_plain_http_on_loopback(
    console_site, settings_factory, cookie_secure, base_url, secure
):
    from starlette.testclient import TestClient

    from integrations.console.app import create_app, session_signer

    settings = settings_factory(
        console={"cookie_secure": cookie_secure},
        ldap=console_site.slapd.ldap_settings(),
        rbac=console_site.slapd.rbac_settings(),
    )
    assert settings_factory().console.cookie_secure == "auto"
    client = TestClient(
        create_app(settings, console_site.database, signer=session_signer(settings)),
        base_url=base_url,
        follow_redirects=False,
    )
    answer = client.post("/login", data={"username": "rad", "password": "radpw"})
    assert answer.status_code == 303
    assert ("Secure" in answer.headers["set-cookie"]) is secure


def test_directory_down_refuses_logins_clearly_and_keeps_open_sessions(console_site):
    open_session = console_site.login("erdoc")
    console_site.slapd.stop()
    try:
        answer = console_site.client().post("/login", data={"username": "rad", "password": "radpw"})
        assert answer.status_code == 503
        assert "directory (LDAP) cannot be reached" in answer.text
        assert open_session.get("/api/worklist").status_code == 200
    finally:
        console_site.slapd.start()
    # failed closed, and audited once, with the reason
    from integrations.db.audit import AuditStore

    refused = AuditStore(console_site.database).search(kind="login_failed", user_id="rad")
    assert len(refused) == 1 and refused[0].outcome == 4


def test_acknowledgement_needs_a_login_and_records_the_person(console_site):
    client = console_site.client()
    erdoc = console_site.login("erdoc")
    (link,) = next(
        s["acknowledge"]
        for s in erdoc.get("/api/worklist").json()["studies"]
        if s["key"] == console_site.studies["critical"]
    )
    # not logged in: the link leads to the login, then back to the acknowledgement
    answer = client.get(link)
    assert answer.status_code == 303 and "/login?next=" in answer.headers["location"]
    login = client.post("/login", data={"username": "surg1", "password": "surg1pw", "next": link})
    assert login.status_code == 303 and login.headers["location"] == link
    page = client.get(link)
    assert page.status_code == 200 and PRIMARY_FINDING in page.text and "ER bay 2" in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    store = EscalationStore(console_site.database)
    # a technologist or a form without the CSRF token acknowledges nothing
    tech = console_site.login("tech")
    assert tech.get(link).status_code == 403
    assert tech.post(link, data={"csrf_token": csrf}).status_code == 403
    assert client.post(link, data={"csrf_token": "forged"}).status_code == 403
    assert store.by_token(console_site.ack_token).state == "notified"
    # a forged or tampered link is not valid
    assert client.get(link[:-2] + "xx").status_code == 404

    done = client.post(link, data={"csrf_token": csrf})
    assert done.status_code == 200 and "Acknowledged" in done.text
    record = store.by_token(console_site.ack_token)
    assert record.state == "acknowledged"
    assert record.acknowledged_by == "surg1 (Dr Sam Surgeon)"
    again = erdoc.post(
        link, data={"csrf_token": re.search(r'value="([^"]+)"', erdoc.get(link).text).group(1)}
    )
    assert "Already acknowledged" in again.text
    assert store.by_token(console_site.ack_token).acknowledged_by == "surg1 (Dr Sam Surgeon)"


def test_logins_views_exports_and_acknowledgements_are_audited(console_site):
    """Every login, view, export and acknowledgement leaves one ATNA audit record."""
    from integrations.db.audit import AuditStore

    critical = console_site.studies["critical"]
    critical_uid = console_site.uids["critical"]
    client = console_site.client()
    assert client.post("/login", data={"username": "rad", "password": "wrong"}).status_code == 401
    client.post("/login", data={"username": "nobody", "password": "nobodypw"})
    console_site.login("rad", client)
    assert client.get(f"/studies/{critical}").status_code == 200
    assert client.get(f"/api/studies/{critical}").status_code == 200
    link = next(s for s in client.get("/api/worklist").json()["studies"] if s["key"] == critical)[
        "acknowledge"
    ][0]
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get(link).text).group(1)
    assert "Acknowledged" in client.post(link, data={"csrf_token": csrf}).text
    records = AuditStore(console_site.database).search(limit=50)
    kinds = [(r.kind, r.user_id, r.study_instance_uid) for r in reversed(records)]
    assert ("login_failed", "rad", None) in kinds
    assert ("login_failed", "nobody", None) in kinds
    assert ("login", "rad", None) in kinds
    assert ("view", "rad", critical_uid) in kinds
    assert ("export", "rad", critical_uid) in kinds
    assert [k for k in kinds if k[0] == "acknowledgement"] == [
        ("acknowledgement", "rad (Dr Rhea Radiologist)", critical_uid)
    ]
