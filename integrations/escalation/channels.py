"""The ways a notification reaches a person: signed webhook, pager broker, e-mail, SMS through
a mail gateway, HL7 alert through the outbox (I/O).

Each channel turns a notification into targets (one per address it can reach) and sends to
one target at a time, raising from the error tree: :class:`PeerUnavailableError` (no
connection, timeout) and :class:`PeerBusyError` (HTTP 408/425/429/5xx, SMTP 4xx) are worth a
retry; :class:`PeerRejectedError` (other HTTP 4xx, SMTP 5xx) is not, the sender moves on.
"""

from __future__ import annotations

import json
import logging
import smtplib
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Protocol

import httpx

from integrations.db.connection import Database
from integrations.db.outbox import OutboxStore
from integrations.db.store import StudyStore
from integrations.emr.enqueue import patient_key_for
from integrations.errors import (
    ConfigError,
    PeerBusyError,
    PeerRejectedError,
    PeerUnavailableError,
)
from integrations.escalation.notification import (
    DELIVERY_HEADER,
    IDEMPOTENCY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Message,
    Notification,
    sign,
)
from integrations.escalation.rules import Recipient
from integrations.hl7.alert import ALERT_MESSAGE_TYPE, alert_control_id, build_alert
from integrations.settings import EscalationSettings, Settings
from models.results import UrgencyTier

log = logging.getLogger(__name__)

RETRYABLE_HTTP = frozenset({408, 425, 429, 500, 502, 503, 504})
SECRET_KEYS = ("webhook_secret", "smtp_password", "pager_token")


@dataclass(frozen=True)
class Target:
    """One address on one channel; ``recipient`` is None for a team-wide target."""

    address: str
    recipient: Recipient | None = None

    @property
    def label(self) -> str:
        return self.recipient.person_id if self.recipient else self.address


class Channel(Protocol):
    name: str

    def targets(self, notification: Message) -> list[Target]:
        """Where this channel would deliver the notification (empty: nothing to do here)."""
        ...

    def send(self, notification: Message, target: Target) -> str:
        """Deliver to one target; return a short detail, raise from the error tree."""
        ...


def _http_error(peer: str, response: httpx.Response) -> Exception:
    text = f"{peer} answered HTTP {response.status_code}"
    if response.status_code in RETRYABLE_HTTP:
        return PeerBusyError(text, peer=peer)
    return PeerRejectedError(text, peer=peer)


class WebhookChannel:
    """JSON POST, signed with HMAC-SHA256 over ``"<timestamp>." + body``."""

    name = "webhook"

    def __init__(
        self, url_for_team: Callable[[str], str], secret: bytes, client: httpx.Client
    ) -> None:
        self.url_for_team = url_for_team
        self.secret = secret
        self.client = client

    def targets(self, notification: Message) -> list[Target]:
        url = self.url_for_team(notification.team_id)
        return [Target(url)] if url else []

    def send(self, notification: Message, target: Target) -> str:
        body = json.dumps(notification.to_json(), sort_keys=True, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            TIMESTAMP_HEADER: str(timestamp),
            IDEMPOTENCY_HEADER: notification.delivery_id,
            DELIVERY_HEADER: notification.delivery_id,
        }
        try:
            response = self.client.post(target.address, content=body, headers=headers)
        except httpx.TransportError as error:
            raise PeerUnavailableError(
                f"webhook {target.address}: {type(error).__name__}: {error}", peer="webhook"
            ) from error
        if not response.is_success:
            raise _http_error(f"webhook {target.address}", response)
        return f"HTTP {response.status_code}"


class PagerChannel:
    """One JSON POST per person to the pager broker (its recipient ID and a 160-char text)."""

    name = "pager"

    def __init__(self, url: str, token: str, client: httpx.Client) -> None:
        self.url = url
        self.token = token
        self.client = client

    def targets(self, notification: Message) -> list[Target]:
        if not self.url:
            return []
        return [Target(r.person.pager, r) for r in notification.recipients if r.person.pager]

    def send(self, notification: Message, target: Target) -> str:
        assert target.recipient is not None
        personal = notification.for_recipient(target.recipient)
        payload = {
            "recipient": target.address,
            "priority": "critical",
            "message": personal.short_text(),
            "idempotency_key": f"{notification.delivery_id}-{target.recipient.person_id}",
            "ack_url": personal.ack_link,
            "ack_token": notification.ack_token,
            "study_link": notification.study_link,
        }
        headers = {IDEMPOTENCY_HEADER: payload["idempotency_key"]}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self.client.post(self.url, json=payload, headers=headers)
        except httpx.TransportError as error:
            raise PeerUnavailableError(
                f"pager broker {self.url}: {type(error).__name__}: {error}", peer="pager"
            ) from error
        if not response.is_success:
            raise _http_error(f"pager broker {self.url}", response)
        return f"HTTP {response.status_code}"


class _SmtpChannel:
    name = "email"
    address_field = "email"

    def __init__(self, settings: EscalationSettings) -> None:
        self.settings = settings

    def targets(self, notification: Message) -> list[Target]:
        if not self.settings.smtp_host:
            return []
        return [
            Target(getattr(r.person, self.address_field), r)
            for r in notification.recipients
            if getattr(r.person, self.address_field)
        ]

    def message(self, notification: Message, target: Target) -> EmailMessage:
        raise NotImplementedError

    def send(self, notification: Message, target: Target) -> str:
        message = self.message(notification, target)
        settings = self.settings
        try:
            with smtplib.SMTP(
                settings.smtp_host, settings.smtp_port, timeout=settings.send_timeout_seconds
            ) as smtp:
                if settings.smtp_starttls:
                    smtp.starttls()
                if settings.smtp_username:
                    smtp.login(settings.smtp_username, settings.smtp_password.get_secret_value())
                refused = smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as error:
            codes = [code for code, _ in error.recipients.values()]
            cls = PeerBusyError if all(400 <= c < 500 for c in codes) else PeerRejectedError
            raise cls(f"SMTP refused {target.address}: {error.recipients}", peer="smtp") from error
        except smtplib.SMTPResponseException as error:
            cls = PeerBusyError if 400 <= error.smtp_code < 500 else PeerRejectedError
            raise cls(
                f"SMTP {settings.smtp_host}:{settings.smtp_port} answered {error.smtp_code}"
                f" {error.smtp_error!r}",
                peer="smtp",
            ) from error
        except (smtplib.SMTPException, OSError) as error:  # refused, reset, timeout
            raise PeerUnavailableError(
                f"SMTP {settings.smtp_host}:{settings.smtp_port}: {type(error).__name__}: {error}",
                peer="smtp",
            ) from error
        if refused:
            raise PeerRejectedError(f"SMTP refused {refused}", peer="smtp")
        return f"accepted by {settings.smtp_host}:{settings.smtp_port}"

    def _base(self, notification: Message, target: Target) -> EmailMessage:
        assert target.recipient is not None
        message = EmailMessage()
        message["From"] = self.settings.smtp_from
        message["To"] = target.address
        message["Date"] = format_datetime(datetime.now(UTC))
        message["Message-ID"] = make_msgid(
            idstring=f"{notification.delivery_id}.{target.recipient.person_id}",
            domain="pacsflow",
        )
        message["X-Priority"] = "1"
        message["Importance"] = "high"
        message["X-Pacsflow-Escalation"] = notification.idempotency_key
        return message


class EmailChannel(_SmtpChannel):
    """The full message to each person's e-mail address."""

    name = "email"
    address_field = "email"

    def message(self, notification: Message, target: Target) -> EmailMessage:
        assert target.recipient is not None
        personal = notification.for_recipient(target.recipient)
        message = self._base(notification, target)
        message["Subject"] = personal.subject()
        message.set_content(personal.email_body())
        return message


class SmsChannel(_SmtpChannel):
    """The 160-character text to each person's mail-to-SMS gateway address."""

    name = "sms"
    address_field = "sms_email"

    def message(self, notification: Message, target: Target) -> EmailMessage:
        assert target.recipient is not None
        personal = notification.for_recipient(target.recipient)
        message = self._base(notification, target)
        message["Subject"] = ""
        message.set_content(personal.short_text())
        return message


class Hl7AlertChannel:
    """A high-priority ORU^R01 into the HL7 outbox for the EMR inbox (delivered on ACK AA by
    the HL7 sender); "delivered" here means durably queued."""

    name = "hl7"

    def __init__(self, settings: Settings, database: Database) -> None:
        self.site_settings = settings
        self.settings = settings.escalation
        self.database = database
        self.outbox = OutboxStore(database)
        self.studies = StudyStore(database)

    def targets(self, notification: Message) -> list[Target]:
        if not isinstance(notification, Notification):
            return []  # the EMR inbox is for clinicians' findings, not the site's operations
        return [Target(f"{self.settings.hl7_receiving_application} inbox")]

    def send(self, notification: Message, target: Target) -> str:
        assert isinstance(notification, Notification)
        study = self.studies.study(notification.study_instance_uid)
        payload = build_alert(
            notification,
            patient_name=study.patient_name if study else "",
            issuer_of_patient_id=study.issuer_of_patient_id if study else "",
            patient_birth_date=study.patient_birth_date if study else "",
            patient_sex=study.patient_sex if study else "",
            now=datetime.now(UTC),
            receiving_application=self.settings.hl7_receiving_application,
            receiving_facility=self.settings.hl7_receiving_facility,
            version=self.site_settings.emr.hl7_version,
        )
        control_id = alert_control_id(notification)
        issuer = study.issuer_of_patient_id if study else ""
        queued = self.outbox.enqueue(
            message_control_id=control_id,
            message_type=ALERT_MESSAGE_TYPE,
            payload=payload,
            study_instance_uid=notification.study_instance_uid,
            # the patient's one ordered queue (MRN rules, A40 merges), shared with the results
            patient_key=patient_key_for(
                self.database, self.site_settings, notification.patient_id, issuer
            ),
            priority=outbox_priority(UrgencyTier.CRITICAL),
        )
        return f"queued {control_id}" if queued else f"already queued {control_id}"


def outbox_priority(tier: UrgencyTier) -> int:
    """HL7 outbox priority of a message about a study of ``tier`` (higher goes first;
    Critical 2, Urgent 1, Routine 0, as the EMR results use)."""
    return 2 - tier.rank


def refuse_secrets_in_file(settings: Settings) -> None:
    """Secrets come from the environment; a TOML file (kept in git) holding one is refused."""
    if settings.config_path is None:
        return
    try:
        data = tomllib.loads(settings.config_path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return  # load_settings already read it; nothing more to say here
    section = data.get("escalation", {})
    found = [key for key in SECRET_KEYS if key in section]
    if found:
        names = ", ".join(f"PACSFLOW_ESCALATION__{key.upper()}" for key in found)
        raise ConfigError(
            f"{settings.config_path}: escalation secrets ({', '.join(found)}) must not be in the"
            f" configuration file; set them in the environment ({names})"
        )


def http_client(settings: EscalationSettings) -> httpx.Client:
    timeout = settings.send_timeout_seconds
    return httpx.Client(
        timeout=httpx.Timeout(timeout, connect=min(2.0, timeout)),
        headers={"User-Agent": "pacsflow-escalation"},
        follow_redirects=False,
    )


def build_channels(
    settings: Settings, database: Database, client: httpx.Client | None = None
) -> dict[str, Channel]:
    """Every channel the configuration uses, ready to send."""
    refuse_secrets_in_file(settings)
    escalation = settings.escalation
    used = {name for team in escalation.teams.values() for name in team.channels}
    client = client or http_client(escalation)
    channels: dict[str, Channel] = {}
    if "webhook" in used:
        secret = escalation.webhook_secret.get_secret_value()
        if not secret:
            raise ConfigError(
                "escalation: a team uses the webhook channel but PACSFLOW_ESCALATION__WEBHOOK_SECRET"
                " is not set (receivers must be able to verify the signature)"
            )

        def url_for_team(team_id: str) -> str:
            team = escalation.teams.get(team_id)
            return (team.webhook_url if team else "") or escalation.webhook_url

        channels["webhook"] = WebhookChannel(url_for_team, secret.encode(), client)
    if "pager" in used:
        channels["pager"] = PagerChannel(
            escalation.pager_url, escalation.pager_token.get_secret_value(), client
        )
    if "email" in used:
        channels["email"] = EmailChannel(escalation)
    if "sms" in used:
        channels["sms"] = SmsChannel(escalation)
    if "hl7" in used:
        channels["hl7"] = Hl7AlertChannel(settings, database)
    return channels
