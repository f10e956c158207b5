"""Finding → team rules, on-call rosters and levels, idempotency keys, escalation settings."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from integrations.errors import ConfigError
from integrations.escalation.rules import (
    ack_timeout,
    escalation_key,
    levels,
    route_finding,
    shift_covers,
)
from integrations.settings import EscalationSettings, ShiftSettings, load_settings

PEOPLE = {
    "day": {"name": "Dr Day", "email": "day@h.test"},
    "night": {"name": "Dr Night", "email": "night@h.test"},
    "weekend": {"name": "Dr Weekend"},
    "chief": {"name": "Dr Chief", "email": "chief@h.test"},
    "neuro": {"name": "Dr Neuro"},
}


def escalation(**overrides) -> EscalationSettings:
    data = {
        "people": PEOPLE,
        "timezone": "Europe/Berlin",
        "teams": {
            "surgery": {
                "on_call": [
                    {
                        "person": "day",
                        "days": ["mon", "tue", "wed", "thu", "fri"],
                        "start": "08:00",
                        "end": "20:00",
                    },
                    {
                        "person": "night",
                        "days": ["mon", "tue", "wed", "thu", "fri"],
                        "start": "20:00",
                        "end": "08:00",
                    },
                    {"person": "weekend", "days": ["sat", "sun"]},
                ],
                "backups": ["chief", "day"],
                "ack_timeout_seconds": 120,
            },
            "neurosurgery": {"on_call": [{"person": "neuro"}]},
        },
        **overrides,
    }
    return load_settings(None, search=False, escalation=data).escalation


def berlin(year, month, day, hour, minute=0) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("Europe/Berlin"))


def test_default_routes_apply_to_teams_the_site_defined():
    settings = escalation()
    assert route_finding(settings, "Tension Pneumothorax").team == "surgery"
    assert route_finding(settings, "Aortic dissection").rule == "default:aortic-dissection"
    assert route_finding(settings, "Subdural hemorrhage").team == "neurosurgery"
    # no "stroke" team at this site and no default team: nobody
    assert route_finding(settings, "Acute ischemic stroke") is None


def test_site_rules_come_first_and_default_team_catches_the_rest():
    settings = escalation(
        rules=[
            {"name": "ptx-to-neuro", "labels": ["tension pneumothorax"], "team": "neurosurgery"}
        ],
        default_team="surgery",
    )
    route = route_finding(settings, "Tension Pneumothorax")
    assert (route.team, route.rule) == ("neurosurgery", "site:ptx-to-neuro")
    fallback = route_finding(settings, "Acute ischemic stroke")
    assert (fallback.team, fallback.rule) == ("surgery", "default_team")
    assert route_finding(escalation(use_default_rules=False), "Tension Pneumothorax") is None


def test_shifts_cover_days_hours_and_nights_past_midnight():
    day = ShiftSettings(person="x", days=["mon"], start=time(8), end=time(20))
    assert shift_covers(day, berlin(2026, 11, 23, 8))  # Monday 08:00
    assert not shift_covers(day, berlin(2026, 11, 23, 20))
    assert not shift_covers(day, berlin(2026, 11, 24, 9))  # Tuesday
    night = ShiftSettings(person="x", days=["fri"], start=time(20), end=time(8))
    assert shift_covers(night, berlin(2026, 11, 27, 23))  # Friday night
    assert shift_covers(night, berlin(2026, 11, 28, 7, 59))  # Saturday early morning
    assert not shift_covers(night, berlin(2026, 11, 28, 8))
    assert not shift_covers(night, berlin(2026, 11, 27, 7))  # Friday morning: Thursday's night
    all_day = ShiftSettings(person="x", days=["sun"])
    assert shift_covers(all_day, berlin(2026, 11, 29, 3))


def test_levels_follow_the_roster_in_the_site_time_zone():
    settings = escalation()
    monday_noon = levels(settings, "surgery", berlin(2026, 11, 23, 12))
    assert [(lvl.label, [r.person_id for r in lvl.recipients]) for lvl in monday_noon] == [
        ("on call", ["day"]),
        ("backup 1", ["chief"]),
        # "day" is on call already: listed once
    ]
    # 21:30 in Berlin is 20:30 UTC: the night shift, whatever the server's clock zone
    monday_night = levels(settings, "surgery", datetime(2026, 11, 23, 20, 30, tzinfo=UTC))
    assert [r.person_id for r in monday_night[0].recipients] == ["night"]
    assert [r.person_id for lvl in monday_night[1:] for r in lvl.recipients] == ["chief", "day"]
    saturday = levels(settings, "surgery", berlin(2026, 11, 28, 12))
    assert [r.person_id for r in saturday[0].recipients] == ["weekend"]


def test_nobody_on_call_makes_the_first_backup_level_zero():
    settings = escalation(
        teams={"surgery": {"on_call": [{"person": "day", "days": ["mon"]}], "backups": ["chief"]}}
    )
    tuesday = levels(settings, "surgery", berlin(2026, 11, 24, 12))
    assert [(lvl.number, lvl.label, lvl.recipients[0].person_id) for lvl in tuesday] == [
        (0, "backup 1", "chief")
    ]


def test_ack_timeout_per_team_or_site():
    settings = escalation(ack_timeout_seconds=300)
    assert ack_timeout(settings, "surgery").total_seconds() == 120
    assert ack_timeout(settings, "neurosurgery").total_seconds() == 300


def test_idempotency_key_is_per_study_and_finding():
    key = escalation_key("1.2.3", "Tension Pneumothorax")
    assert key == escalation_key("1.2.3", " tension pneumothorax ")
    assert key != escalation_key("1.2.3", "Aortic dissection")
    assert key != escalation_key("1.2.4", "Tension Pneumothorax")
    assert len(key) == 32


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"teams": {"surgery": {"on_call": [{"person": "ghost"}]}}}, "unknown person 'ghost'"),
        ({"teams": {"surgery": {"backups": ["ghost"]}}}, "unknown person 'ghost'"),
        ({"teams": {"empty": {}}}, "nobody on call and no backups"),
        ({"rules": [{"name": "r", "labels": ["x"], "team": "nope"}]}, "unknown team 'nope'"),
        ({"default_team": "nope"}, "default_team: unknown team"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"teams": {"surgery": {"on_call": [{"person": "day"}], "channels": ["fax"]}}}, "channels"),
        ({"webhook_url": "ftp://x"}, "http"),
    ],
)
def test_escalation_settings_refuse_what_would_leave_a_finding_unreached(overrides, message):
    with pytest.raises(ConfigError, match=message):
        escalation(**overrides)


def test_secrets_come_from_the_environment_and_merge_with_the_file(tmp_path, monkeypatch):
    config = tmp_path / "pacsflow.toml"
    config.write_text(
        '[escalation]\nwebhook_url = "https://hooks.h.test/x"\n'
        '[escalation.people.a]\nname = "A"\n'
        '[escalation.teams.surgery]\nchannels = ["webhook"]\non_call = [{person = "a"}]\n'
    )
    monkeypatch.setenv("PACSFLOW_ESCALATION__WEBHOOK_SECRET", "from-env")
    settings = load_settings(config)
    assert settings.escalation.webhook_secret.get_secret_value() == "from-env"
    assert settings.escalation.webhook_url == "https://hooks.h.test/x"
    assert "from-env" not in repr(settings.escalation)


def test_escalation_settings_reach_a_child_process_and_secrets_only_through_its_environment(
    monkeypatch,
):
    from integrations.settings import settings_environment

    monkeypatch.setenv("PACSFLOW_ESCALATION__WEBHOOK_SECRET", "from-the-environment")
    parent = load_settings(
        None,
        search=False,
        escalation={
            "people": PEOPLE,
            "teams": {
                "surgery": {"on_call": [{"person": "day", "start": "08:00", "end": "20:00"}]}
            },
            "rules": [{"name": "r", "label_pattern": "dissection", "team": "surgery"}],
        },
        urgency={"rules": [{"name": "u", "labels": ["Nodule"], "tier": "Routine"}]},
        worklist={"route": "omi_o23"},
    )
    environment = settings_environment(parent)
    # A *_ENV key holds the name of a variable (e.g. [console] session_secret_env), never a secret.
    assert not any(
        "SECRET" in name or "PASSWORD" in name or "TOKEN" in name
        for name in environment
        if not name.endswith("_ENV")
    )
    assert environment["PACSFLOW_CONSOLE__SESSION_SECRET_ENV"] == "PACSFLOW_CONSOLE_SECRET"
    assert "from-the-environment" not in "".join(environment.values())
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    child = load_settings(None, search=False)
    for section in ("escalation", "urgency", "worklist"):
        assert getattr(child, section) == getattr(parent, section)
    assert child.escalation.webhook_secret.get_secret_value() == "from-the-environment"
