"""The HL7 outbox sender: ORU^R01 (and any queued HL7 message) to the EMR, ORM/OMI to the RIS,
over MLLP (I/O).

ACK handling (the issue's rules, the peer's word is final on AR)::

    AA / CA                       sent
    AE / CE                       retried with backoff, failed after ``ae_max_attempts``
    AR / CR                       failed with the peer's reason
    no answer, refused, reset     retried with backoff (timeout closes the connection)
    an ACK for another control ID retried (the connection is reopened)

Every retry of a message carries the same MSH-10. When the oldest message has waited
``[emr] alert_after_minutes``, the operators are told once (``[emr] alert_team``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from integrations.db.connection import Database
from integrations.db.outbox import Hl7Destination, OutboxItem, OutboxStore
from integrations.db.patients import PatientStore, ResolvedContext
from integrations.emr.document import ResultDocument
from integrations.emr.identifiers import MrnRules
from integrations.emr.sender import OutboxSender, QueueAgeAlert
from integrations.errors import PeerUnavailableError
from integrations.hl7.ack import AckParseError, parse_ack
from integrations.hl7.charset import declared_charset, python_codec
from integrations.hl7.mllp import MllpClient
from integrations.hl7.oru import MessageRoute, build_oru
from integrations.retry import Outcome, RetryPolicy, failed, retry, sent
from integrations.settings import Settings
from integrations.tls import peer_context

log = logging.getLogger(__name__)


def encode_payload(payload: str) -> bytes:
    """The bytes of an ER7 message in the character set its MSH-18 declares.

    With MSH-18 empty the standard's default is ASCII; text that is not ASCII is sent as
    UTF-8 rather than mangled.
    """
    name = declared_charset(payload.encode("utf-8"))
    codec = python_codec(name) if name else None
    if codec:
        return payload.encode(codec)
    try:
        return payload.encode("ascii")
    except UnicodeEncodeError:
        return payload.encode("utf-8")


class Hl7Sender(OutboxSender):
    """Drains one destination of the HL7 outbox: ``emr`` ([emr], ORU and alerts) or ``ris``
    ([ris], the worklist's ORM/OMI priority updates)."""

    name = "hl7"

    def __init__(
        self, database: Database, settings: Settings, destination: Hl7Destination = "emr"
    ) -> None:
        emr = settings.emr
        peer = settings.ris if destination == "ris" else emr
        super().__init__(
            database,
            OutboxStore(database, destination),
            PatientStore(database, MrnRules.from_settings(settings.mrn)),
            RetryPolicy(peer.retry_delays_seconds, peer.retry_jitter),
            lease_seconds=peer.connect_timeout_seconds + peer.ack_timeout_seconds + 30.0,
            poll_seconds=peer.poll_seconds,
            context_wait_seconds=emr.context_wait_seconds if destination == "emr" else 0.0,
        )
        self.name = f"hl7-{destination}" if destination != "emr" else "hl7"
        self.settings = peer
        self.oru_version = emr.hl7_version
        self.route = MessageRoute(
            sending_application=settings.hl7.sending_application,
            sending_facility=settings.hl7.sending_facility,
            receiving_application=emr.receiving_application,
            receiving_facility=emr.receiving_facility,
            processing_id=emr.processing_id,
        )
        self.queue_alert: QueueAgeAlert | None = None
        if destination == "emr":
            from integrations.escalation.operators import OperatorAlerts

            operators = OperatorAlerts(settings, database, emr.alert_team)
            self.queue_alert = QueueAgeAlert(
                self.outbox,
                operators.send,
                what=f"the EMR at mllp://{emr.host}:{emr.port}",
                after_seconds=emr.alert_after_minutes * 60.0,
                check_seconds=min(5.0, emr.alert_after_minutes * 30.0),
            )
        self.client = MllpClient(
            peer.host,
            peer.port,
            connect_timeout=peer.connect_timeout_seconds,
            ack_timeout=peer.ack_timeout_seconds,
            tls=peer_context(peer),
        )

    def render(self, item: OutboxItem, resolved: ResolvedContext | None) -> str:
        assert item.document is not None
        document = ResultDocument.from_json(item.document)
        return build_oru(
            document,
            resolved.context if resolved else None,
            self.route,
            datetime.now(UTC),
            self.oru_version,
        )

    def unreachable(self) -> str | None:
        try:
            self.client.connect()
        except PeerUnavailableError as error:
            return str(error)
        return None

    def deliver(self, item: OutboxItem, payload: str) -> tuple[Outcome, bool]:
        try:
            raw = self.client.send(encode_payload(payload))
        except PeerUnavailableError as error:
            return retry(str(error)), self.client.last_send_reached_peer
        try:
            ack = parse_ack(raw.decode("utf-8", errors="replace"))
        except AckParseError as error:
            self.client.close()
            return retry(f"unreadable answer from {self.client.peer}: {error}"), True
        if ack.message_control_id != item.key:
            self.client.close()
            return retry(
                f"ACK for control ID {ack.message_control_id!r}, expected {item.key!r}"
            ), True
        code = ack.code.value
        reason = f"{code} from {self.client.peer}" + (f": {ack.text}" if ack.text else "")
        if ack.code.accepted:
            return sent(ack_code=code), True
        if ack.code.rejected:
            return failed(reason, ack_code=code), True
        limit = self.settings.ae_max_attempts
        if limit and item.attempts >= limit:
            return failed(f"{reason} (after {item.attempts} attempts)", ack_code=code), True
        return retry(reason, ack_code=code), True

    def periodic(self) -> None:
        if self.queue_alert is not None:
            self.queue_alert.check()

    def close(self) -> None:
        self.client.close()
        super().close()
