"""Operational alerts to the people who run the site, over an escalation team's channels (I/O).

One path for every alert that is not a Critical finding: late or failed result deliveries
(``integrations.dicom.result_sender``), the daily monitoring report's thresholds
(``integrations.monitoring``). The alert goes to the team's on-call people, over the team's
channels in its delivery order, never to the EMR (the ``hl7`` channel is for findings), and
carries no patient data: counts, ages, peers, study keys and UIDs only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from integrations.escalation.channels import Channel
from integrations.escalation.notification import OperationalAlert
from integrations.escalation.rules import levels
from integrations.escalation.sender import channel_policy, deliver
from integrations.settings import Settings

log = logging.getLogger(__name__)


def send_operational_alert(
    settings: Settings,
    channels: Mapping[str, Channel],
    team_id: str,
    *,
    idempotency_key: str,
    title: str,
    lines: tuple[str, ...],
    facts: dict[str, Any],
) -> bool:
    """Send one alert to ``team_id``; True once a channel delivered it.

    With no team (``team_id`` empty or unknown) there is nobody to send to: the caller's
    CRITICAL log line is the alert, and this answers True so nothing retries forever.
    """
    escalation = settings.escalation
    team = escalation.teams.get(team_id) if team_id else None
    if team is None:
        return True
    now = datetime.now(UTC)
    team_levels = levels(escalation, team_id, now)
    alert = OperationalAlert(
        idempotency_key=idempotency_key,
        team_id=team_id,
        team_name=team.display_name or team_id,
        recipients=team_levels[0].recipients if team_levels else (),
        title=title,
        lines=lines,
        facts=facts,
        issued_at=now,
    )
    order = [name for name in team.channels if name != "hl7"]
    delivery = deliver(alert, channels, order, team.delivery, channel_policy(escalation))
    if not delivery.delivered:
        log.error(
            "ALERT %r reached nobody on team %s (%s)",
            title,
            team_id,
            "; ".join(f"{a.channel}: {a.detail}" for a in delivery.attempts) or "no channel",
        )
    return delivery.delivered
