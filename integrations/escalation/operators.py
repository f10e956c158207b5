"""An operational alert sender bound to one team, its channels built on first use (I/O).

For long-lived loops that alert now and then (the node's low disk, an ageing EMR outbox):
:func:`integrations.escalation.operational.send_operational_alert` does the sending.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from integrations.db.connection import Database
from integrations.errors import ConfigError
from integrations.escalation.channels import Channel, build_channels
from integrations.escalation.operational import send_operational_alert
from integrations.settings import Settings

log = logging.getLogger(__name__)


class OperatorAlerts:
    """Sends operational alerts to ``team_id`` (channels built on first use)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        team_id: str,
        *,
        channels: Mapping[str, Channel] | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.team_id = team_id
        self._channels = dict(channels) if channels is not None else None

    def channels(self) -> Mapping[str, Channel]:
        if self._channels is None:
            try:
                self._channels = dict(build_channels(self.settings, self.database))
            except ConfigError as error:
                log.error("ALERT operational alerts cannot use the escalation channels: %s", error)
                self._channels = {}
        return self._channels

    def send(
        self, *, idempotency_key: str, title: str, lines: Sequence[str], facts: dict[str, Any]
    ) -> bool:
        """True once the alert reached someone (or there is no team to tell)."""
        return send_operational_alert(
            self.settings,
            self.channels(),
            self.team_id,
            idempotency_key=idempotency_key,
            title=title,
            lines=tuple(lines),
            facts=facts,
        )
