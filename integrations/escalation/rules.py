"""Escalation rules and rosters: which team a Critical finding goes to, who is reached at each
level, and the idempotency key of an escalation (pure).

Level 0 is whoever is on call for the team now (every shift that covers this moment, in the
team's time zone); levels 1, 2, ... are the team's backups in order. When nobody is on call,
the first backup becomes level 0 so a Critical finding never waits for a shift to start.
Rules are data: site rules first (``[[escalation.rules]]``), then, unless switched off, the
built-in routes for the teams the site has defined (:mod:`integrations.default_rules`, the
same table that makes those findings Critical).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from integrations.default_rules import DEFAULT_FINDING_RULES
from integrations.settings import EscalationSettings, PersonSettings, ShiftSettings, TeamSettings
from integrations.urgency import FindingMatcher

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class EscalationRule:
    name: str
    team: str
    matcher: FindingMatcher
    source: str = "default"

    @property
    def qualified_name(self) -> str:
        return f"{self.source}:{self.name}"


# The built-in routes: the Critical rows of the one default table, with the team each names.
DEFAULT_ESCALATION_RULES: tuple[EscalationRule, ...] = tuple(
    EscalationRule(row.name, row.team, FindingMatcher(**row.matcher))
    for row in DEFAULT_FINDING_RULES
    if row.team is not None
)


def escalation_key(study_instance_uid: str, finding: str) -> str:
    """One escalation per study and finding: the same key on every retry and rerun; a
    different finding (another label) is a new key and notifies again."""
    text = f"escalation|v1|{study_instance_uid}|{finding.strip().casefold()}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def site_rules(settings: EscalationSettings) -> tuple[EscalationRule, ...]:
    rules = [
        EscalationRule(
            rule.name,
            rule.team,
            FindingMatcher(
                labels=tuple(rule.labels),
                codes=tuple(rule.codes),
                label_pattern=rule.label_pattern,
                analyzers=tuple(rule.analyzers),
            ),
            source="site",
        )
        for rule in settings.rules
    ]
    if settings.use_default_rules:
        rules.extend(rule for rule in DEFAULT_ESCALATION_RULES if rule.team in settings.teams)
    return tuple(rules)


@dataclass(frozen=True)
class TeamRoute:
    team: str
    rule: str  # "site:<name>", "default:<name>" or "default_team"


def route_finding(
    settings: EscalationSettings, label: str, code: str = "", analyzer: str = ""
) -> TeamRoute | None:
    """The team a Critical finding goes to, or None when no rule and no default team apply."""
    for rule in site_rules(settings):
        if rule.matcher.matches(label, code, analyzer):
            return TeamRoute(rule.team, rule.qualified_name)
    if settings.default_team:
        return TeamRoute(settings.default_team, "default_team")
    return None


@dataclass(frozen=True)
class Recipient:
    person_id: str
    person: PersonSettings


@dataclass(frozen=True)
class Level:
    number: int
    label: str  # "on call", "backup 1", ...
    recipients: tuple[Recipient, ...]


def shift_covers(shift: ShiftSettings, local: datetime) -> bool:
    """True when ``shift`` covers the local wall-clock moment ``local``."""
    day = _WEEKDAYS[local.weekday()]
    previous_day = _WEEKDAYS[(local.weekday() - 1) % 7]
    moment = local.time().replace(tzinfo=None)
    if shift.start == shift.end:
        return day in shift.days
    if shift.start < shift.end:
        return day in shift.days and shift.start <= moment < shift.end
    # past midnight: the evening part on a listed day, the morning part the day after
    return (day in shift.days and moment >= shift.start) or (
        previous_day in shift.days and moment < shift.end
    )


def on_call(team: TeamSettings, local: datetime) -> tuple[str, ...]:
    people: list[str] = []
    for shift in team.on_call:
        if shift_covers(shift, local) and shift.person not in people:
            people.append(shift.person)
    return tuple(people)


def levels(settings: EscalationSettings, team_id: str, now: datetime) -> tuple[Level, ...]:
    """Everyone the team reaches, level by level, at the moment ``now`` (aware datetime)."""
    team = settings.teams[team_id]
    local = now.astimezone(ZoneInfo(settings.timezone))
    result: list[Level] = []
    seen: set[str] = set()

    def add(label: str, person_ids: tuple[str, ...]) -> None:
        fresh = tuple(p for p in person_ids if p not in seen)
        if not fresh:
            return
        seen.update(fresh)
        result.append(
            Level(len(result), label, tuple(Recipient(p, settings.people[p]) for p in fresh))
        )

    add("on call", on_call(team, local))
    for index, backup in enumerate(team.backups, start=1):
        add(f"backup {index}", (backup,))
    return tuple(result)


def recipients_up_to(
    settings: EscalationSettings, team_id: str, level: int, now: datetime
) -> tuple[tuple[Level, ...], bool]:
    """Levels 0..``level`` at ``now``, and whether ``level`` is the team's last level."""
    all_levels = levels(settings, team_id, now)
    reached = all_levels[: level + 1]
    return reached, level >= len(all_levels) - 1


def ack_timeout(settings: EscalationSettings, team_id: str) -> timedelta:
    team = settings.teams.get(team_id)
    seconds = (
        team.ack_timeout_seconds
        if team is not None and team.ack_timeout_seconds is not None
        else settings.ack_timeout_seconds
    )
    return timedelta(seconds=seconds)
