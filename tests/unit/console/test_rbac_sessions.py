"""Roles from groups, what each role may see, signed sessions and acknowledge links (pure)."""

from __future__ import annotations

import time

import pytest

from integrations.console.sessions import SessionSigner, csrf_matches
from integrations.console.views import bar_chart_svg, person_name, worklist_item
from integrations.errors import ConfigError
from integrations.ldap.rbac import (
    Role,
    View,
    WorklistDetail,
    allowed,
    roles_for_groups,
    worklist_detail,
)
from integrations.settings import load_settings

RADIOLOGISTS = "cn=Radiologists,ou=groups,dc=h,dc=test"
MAPPING = {
    Role.RADIOLOGIST: [RADIOLOGISTS],
    Role.EMERGENCY_PHYSICIAN: ["cn=er,ou=groups,dc=h,dc=test"],
    Role.IT_ADMIN: ["cn=it,ou=groups,dc=h,dc=test"],
}
SECRET = "s" * 40


def test_roles_are_the_union_of_the_groups_and_dns_compare_as_ldap_does():
    assert roles_for_groups(["CN=radiologists, OU=Groups,DC=h,DC=test"], MAPPING) == {
        Role.RADIOLOGIST
    }
    both = roles_for_groups(
        ["cn=er,ou=groups,dc=h,dc=test", "cn=it,ou=groups,dc=h,dc=test"], MAPPING
    )
    assert both == {Role.EMERGENCY_PHYSICIAN, Role.IT_ADMIN}
    assert allowed(both, View.SYSTEM) and allowed(both, View.ACKNOWLEDGE)
    assert not allowed(both, View.STUDY)
    assert roles_for_groups(["cn=cafeteria,dc=h,dc=test"], MAPPING) == frozenset()


@pytest.mark.parametrize(
    ("role", "views"),
    [
        (Role.RADIOLOGIST, {View.WORKLIST, View.STUDY, View.OVERLAY, View.ANALYTICS}),
        (Role.EMERGENCY_PHYSICIAN, {View.WORKLIST, View.ACKNOWLEDGE}),
        (Role.TECHNOLOGIST, {View.WORKLIST}),
        (Role.DEPARTMENT_HEAD, {View.ANALYTICS}),
        (Role.IT_ADMIN, {View.SYSTEM, View.AUDIT, View.METRICS}),
    ],
)
def test_each_role_sees_only_its_views(role, views):
    page_views = {View.WORKLIST, View.STUDY, View.OVERLAY, View.ANALYTICS, View.SYSTEM, View.AUDIT}
    assert {view for view in page_views if allowed({role}, view)} == views & page_views
    assert allowed({role}, View.ACKNOWLEDGE) == (
        role in {Role.RADIOLOGIST, Role.EMERGENCY_PHYSICIAN}
    )


def test_worklist_rows_carry_only_what_the_role_may_see():
    row = {
        "study_instance_uid": "1.2.3",
        "patient_name": "Doe^Jane",
        "tier": "Critical",
        "primary_finding": "Tension Pneumothorax",
        "primary_probability": 0.93,
        "status": "read",
        "ack_tokens": ["tok"],
    }
    assert worklist_detail({Role.TECHNOLOGIST, Role.EMERGENCY_PHYSICIAN}) is WorklistDetail.TRIAGE
    status = worklist_item(row, WorklistDetail.STATUS, lambda t: f"/ack/{t}")
    assert status["status"] == "results stored"
    assert not {"tier", "primary_finding", "primary_probability", "acknowledge"} & set(status)
    triage = worklist_item(row, WorklistDetail.TRIAGE, lambda t: f"/ack/{t}")
    assert triage["primary_finding"] == "Tension Pneumothorax" and triage["acknowledge"] == [
        "/ack/tok"
    ]
    assert "primary_probability" not in triage
    assert worklist_item(row, WorklistDetail.FULL)["primary_probability"] == 0.93
    assert person_name("Doe^Jane^Q") == "Doe, Jane Q" and person_name("Doe") == "Doe"


def test_session_round_trip_forgery_idle_timeout_and_maximum_age():
    signer = SessionSigner(SECRET, idle_seconds=1, max_seconds=3600)
    session = signer.new_session("rad", "Dr Rad", {Role.RADIOLOGIST})
    cookie = signer.dump(session)
    assert signer.load(cookie) == session
    assert session.who == "rad (Dr Rad)"
    assert csrf_matches(session, session.csrf_token) and not csrf_matches(session, "x")
    assert not csrf_matches(session, "")
    assert signer.load(cookie[:-2] + "zz") is None
    other = SessionSigner("t" * 40, idle_seconds=1, max_seconds=3600)
    assert other.load(cookie) is None
    assert signer.load(cookie, now=time.time() + 7200) is None  # too old whatever the activity
    time.sleep(2.1)
    assert signer.load(cookie) is None  # idle too long


def test_ack_links_are_signed_and_expire():
    signer = SessionSigner(SECRET, idle_seconds=60, max_seconds=60)
    link = signer.ack_link_token("the-ack-token")
    assert signer.ack_token(link, 60) == "the-ack-token"
    assert signer.ack_token(link + "x", 60) is None
    time.sleep(1.1)
    assert signer.ack_token(link, 0.5) is None


def test_short_secret_is_refused():
    with pytest.raises(ValueError):
        SessionSigner("short", idle_seconds=1, max_seconds=1)


def test_console_ldap_rbac_settings(monkeypatch):
    settings = load_settings(
        None,
        search=False,
        ldap={"url": "ldaps://ldap.h.test", "user_dn_template": "uid={username},dc=h"},
        rbac={"radiologist": [RADIOLOGISTS]},
    )
    assert settings.console.port == 8480 and settings.console.enabled
    assert settings.console.cookie_secure == "auto"
    assert settings.rbac.radiologist == [RADIOLOGISTS]
    with pytest.raises(ConfigError, match=r"ldap\.url"):
        load_settings(None, search=False, ldap={"url": "http://x"})
    with pytest.raises(ConfigError, match="username"):
        load_settings(None, search=False, ldap={"user_dn_template": "uid=x"})
    with pytest.raises(ConfigError, match=r"rbac\.auditor"):
        load_settings(None, search=False, rbac={"auditor": []})
    monkeypatch.setenv("PACSFLOW_CONSOLE__PORT", "9480")
    assert load_settings(None, search=False).console.port == 9480


def test_bar_chart_is_plain_svg_with_escaped_labels():
    svg = bar_chart_svg("Rate <per> label", [("A&B", 0.5), ("C", 0.25)], percent=True)
    assert svg.startswith("<svg") and "A&amp;B" in svg and "50%" in svg and "<script" not in svg
