"""What every escalation message carries, in each channel's form, and the webhook signature
(pure).

Every notification carries the tier, the finding with its confidence, the patient's ward, the
modality and Study Instance UID, a link to the study and an acknowledge link with its token.
Patient names, MRNs and accession numbers stay out by default: pages, SMS and e-mails land
on lock screens and in mailboxes. ``[escalation] include_identifiers = true`` adds the
accession number to the texts and the accession and patient ID to the signed webhook. The
HL7 alert to the EMR (a system, not a screen) always carries what the EMR needs.

The webhook body is signed like this (the receiver recomputes and compares in constant time)::

    X-Pacsflow-Timestamp: <unix seconds>
    X-Pacsflow-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

Putting the timestamp under the signature lets a receiver refuse replays older than a few
minutes (:func:`verify_signature` does).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import quote

from integrations.escalation.rules import Recipient
from models.results import NOT_FOR_CLINICAL_USE

SIGNATURE_HEADER = "X-Pacsflow-Signature"
TIMESTAMP_HEADER = "X-Pacsflow-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DELIVERY_HEADER = "X-Pacsflow-Delivery"
EVENT_TYPE = "pacsflow.critical_finding"
SHORT_TEXT_LIMIT = 160


@dataclass(frozen=True)
class Notification:
    """One message about one escalation, to the recipients of one or more levels."""

    idempotency_key: str
    level: int
    level_label: str
    round: int  # 0 for the first notification, 1, 2, ... for each unacknowledged timeout
    team_id: str
    team_name: str
    recipients: tuple[Recipient, ...]
    study_instance_uid: str
    accession_number: str
    modality: str
    patient_id: str
    patient_location: str
    finding: str
    finding_code: str
    probability: float
    tier: str
    rule: str
    analyzer: str
    study_link: str
    ack_link: str
    ack_token: str
    study_closed_at: datetime | None
    issued_at: datetime
    clinical_use: bool = True  # False: the model is not for clinical use; every form says so
    include_identifiers: bool = False  # accession (texts) and patient ID (webhook)

    @property
    def delivery_id(self) -> str:
        """Same on every retry of this round and level; new for each re-send round."""
        return f"{self.idempotency_key}-L{self.level}-R{self.round}"

    @property
    def ward(self) -> str:
        return self.patient_location or "ward unknown"

    @property
    def resend(self) -> bool:
        return self.round > 0

    @property
    def prefix(self) -> str:
        """What every form starts with: the clinical-use warning, then the reminder mark."""
        warning = f"{NOT_FOR_CLINICAL_USE} " if not self.clinical_use else ""
        return warning + ("REMINDER " if self.resend else "")

    def subject(self) -> str:
        subject = (
            f"{self.prefix}CRITICAL AI finding: {self.finding} ({self.probability:.0%})"
            f" - {self.ward}"
        )
        if self.include_identifiers:
            subject += f" - Acc {self.accession_number or '?'}"
        return subject

    def short_text(self) -> str:
        """For pagers and SMS: at most 160 characters, the acknowledge link always whole."""
        tail = f" Ack: {self.ack_link}"
        study = self.modality
        if self.include_identifiers:
            study = f"acc {self.accession_number or '?'} {self.modality}"
        head = (
            f"{self.prefix}CRITICAL AI: {self.finding} {self.probability:.0%}, {self.ward},"
            f" {study}."
        )
        room = SHORT_TEXT_LIMIT - len(tail)
        if room <= 1:
            return tail.strip()  # the link matters more than the limit
        if len(head) > room:
            head = head[: room - 1] + "…"
        return head + tail

    def for_recipient(self, recipient: Recipient) -> Notification:
        """This notification addressed to one person, whose acknowledge link names them."""
        return replace(
            self,
            recipients=(recipient,),
            ack_link=f"{self.ack_link}?by={quote(recipient.person_id, safe='')}",
        )

    def email_body(self) -> str:
        lines = [
            "A Critical finding was flagged by AI and needs a clinician now.",
            "",
            f"Finding:     {self.finding} (confidence {self.probability:.0%}, tier {self.tier})",
            f"Ward:        {self.ward}",
            *([f"Accession:   {self.accession_number or '(none)'}"] * self.include_identifiers),
            f"Modality:    {self.modality}",
            f"Study UID:   {self.study_instance_uid}",
            f"Team:        {self.team_name} ({self.level_label})",
            "",
            f"Open the study:  {self.study_link or '(no viewer link configured)'}",
            f"Acknowledge:     {self.ack_link}",
            f"Ack token:       {self.ack_token}",
            "",
            "Unacknowledged notifications are re-sent and escalated to the backup.",
            "AI-generated preliminary result; not for primary diagnosis.",
        ]
        if self.resend:
            lines.insert(0, f"REMINDER {self.round}: not acknowledged yet.")
        if not self.clinical_use:
            lines[:0] = [
                f"{NOT_FOR_CLINICAL_USE}: this finding comes from a demo or research model"
                f" ({self.analyzer}), not approved for patient care.",
                "",
            ]
        return "\n".join(lines) + "\n"

    def to_json(self) -> dict[str, Any]:
        """The webhook body: identifiers only with ``include_identifiers``."""
        study: dict[str, Any] = {
            "study_instance_uid": self.study_instance_uid,
            "modality": self.modality,
            "closed_at": self.study_closed_at.isoformat() if self.study_closed_at else None,
            "link": self.study_link,
        }
        patient: dict[str, Any] = {"ward": self.patient_location}
        if self.include_identifiers:
            study["accession_number"] = self.accession_number
            patient["id"] = self.patient_id
        return {
            "type": EVENT_TYPE,
            "idempotency_key": self.idempotency_key,
            "delivery_id": self.delivery_id,
            "level": self.level,
            "level_label": self.level_label,
            "round": self.round,
            "team": {"id": self.team_id, "name": self.team_name},
            "recipients": [
                {"id": r.person_id, "name": r.person.name, "pager": r.person.pager}
                for r in self.recipients
            ],
            "study": study,
            "patient": patient,
            "finding": {
                "label": self.finding,
                "code": self.finding_code,
                "confidence": round(self.probability, 4),
                "tier": self.tier,
                "rule": self.rule,
                "analyzer": self.analyzer,
            },
            "acknowledge": {"url": self.ack_link, "token": self.ack_token},
            "issued_at": self.issued_at.isoformat(),
            "clinical_use": self.clinical_use,
            **({"notice": NOT_FOR_CLINICAL_USE} if not self.clinical_use else {}),
        }


OPERATIONAL_EVENT_TYPE = "pacsflow.operational_alert"


@dataclass(frozen=True)
class OperationalAlert:
    """A message to the people who run the site (a late or failed result delivery, ...),
    sent over a team's channels like a notification, with nothing to acknowledge and no
    patient data: counts, ages, peers and Study Instance UIDs only."""

    idempotency_key: str
    team_id: str
    team_name: str
    recipients: tuple[Recipient, ...]
    title: str
    lines: tuple[str, ...]
    facts: dict[str, Any]
    issued_at: datetime
    level: int = 0
    round: int = 0
    ack_link: str = ""
    ack_token: str = ""
    study_link: str = ""

    @property
    def delivery_id(self) -> str:
        return self.idempotency_key

    @property
    def resend(self) -> bool:
        return False

    def subject(self) -> str:
        return f"pacsflow ALERT: {self.title}"

    def short_text(self) -> str:
        text = self.subject()
        return text if len(text) <= SHORT_TEXT_LIMIT else text[: SHORT_TEXT_LIMIT - 1] + "…"

    def for_recipient(self, recipient: Recipient) -> OperationalAlert:
        return replace(self, recipients=(recipient,))

    def email_body(self) -> str:
        return "\n".join([self.title, "", *self.lines]) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "type": OPERATIONAL_EVENT_TYPE,
            "idempotency_key": self.idempotency_key,
            "delivery_id": self.delivery_id,
            "team": {"id": self.team_id, "name": self.team_name},
            "recipients": [{"id": r.person_id, "name": r.person.name} for r in self.recipients],
            "title": self.title,
            "text": list(self.lines),
            "facts": self.facts,
            "issued_at": self.issued_at.isoformat(),
        }


# What a channel can carry: a Critical finding's notification, or an operational alert.
Message = Notification | OperationalAlert


def study_link(template: str, study_instance_uid: str, accession_number: str) -> str:
    """The viewer link: ``{study_instance_uid}`` and ``{accession_number}`` replaced, quoted.

    Plain replacement, not ``str.format``: a template is data and cannot reach attributes.
    """
    return template.replace("{study_instance_uid}", quote(study_instance_uid, safe="")).replace(
        "{accession_number}", quote(accession_number, safe="")
    )


def ack_link(base_url: str, token: str, person_id: str = "") -> str:
    link = f"{base_url.rstrip('/')}/ack/{quote(token, safe='')}"
    return f"{link}?by={quote(person_id, safe='')}" if person_id else link


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance_seconds: float = 300.0,
) -> bool:
    """True when ``signature`` is ours for this body and the timestamp is recent."""
    try:
        moment = int(timestamp)
    except ValueError:
        return False
    if abs(now - moment) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, moment, body), signature)
