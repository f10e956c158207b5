"""The ADT listener: every received HL7 message stored, applied once, acknowledged (I/O).

For each MLLP message::

    decode (MSH-18) ─▶ hl7apy parse + check (v2.3-2.5.1) ─▶ store + apply (one transaction) ─▶ ACK
         │ bad bytes          │ invalid                             │ database down
         └────────── AE with the reason ──────┘                     └─ AR (nothing stored, resend later)

A message whose sender (MSH-3, MSH-4, source address) is not in ``[hl7] allowed_senders``
(when the list is set) is answered AR, logged and neither stored nor applied.

AA is returned only after the transaction committed. A duplicate control ID is acknowledged
AA again but changes nothing. Enhanced acknowledgment mode (MSH-15 set) answers with the
accept codes CA/CE/CR and honours MSH-15 (AL, ER, SU, NE); pacsflow sends no application
acknowledgments of its own. The connection stays open after an AE or AR: a bad message never
stops the listener.
"""

from __future__ import annotations

import logging
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from integrations.db.patients import PatientStore
from integrations.errors import StoreError
from integrations.hl7.ack import (
    AcknowledgmentCode,
    ErrorCondition,
    Hl7MessageError,
    Hl7Problem,
    build_ack,
)
from integrations.hl7.adt import AdtMessage, parse_adt, read_header
from integrations.hl7.charset import CharsetError, decode_message, python_codec
from integrations.hl7.header import MessageHeader, format_dtm
from integrations.hl7.mllp import MllpServer, RefusalRecorder
from integrations.hl7.model import ParsedMessage
from integrations.metrics import HL7_MESSAGES_REFUSED
from integrations.settings import Hl7SenderSettings, Hl7Settings
from integrations.tls import listener_context

if TYPE_CHECKING:
    from integrations.audit.trail import AuditTrail

log = logging.getLogger(__name__)


def _namespace(hd: str, header: MessageHeader) -> str:
    """The namespace ID (first component) of an HD field as written, for matching."""
    return hd.split(header.delimiters.component, 1)[0].strip().casefold()


def peer_host(peer: str) -> str:
    """The address part of an MLLP peer ``host:port`` (``[v6]:port`` too)."""
    return peer.rsplit(":", 1)[0].strip("[]")


def sender_allowed(header: MessageHeader, peer: str, allowed: list[Hl7SenderSettings]) -> bool:
    """True when some allowed sender matches MSH-3, MSH-4 and the source address (or the
    list is empty)."""
    if not allowed:
        return True
    application = _namespace(header.sending_application, header)
    facility = _namespace(header.sending_facility, header)
    host = peer_host(peer)
    return any(
        (not entry.application or entry.application.casefold() == application)
        and (not entry.facility or entry.facility.casefold() == facility)
        and (not entry.host or entry.host == host)
        for entry in allowed
    )


def _ack_wanted(header: MessageHeader | None, success: bool) -> bool:
    """Enhanced mode: MSH-15 AL always, NE never, ER on errors only, SU on success only."""
    if header is None or not header.enhanced_mode:
        return True
    mode = header.accept_acknowledgment_type
    return mode == "AL" or (mode == "ER" and not success) or (mode == "SU" and success)


class AdtListener:
    """Handles received messages; :meth:`serve` puts it behind an MLLP server."""

    def __init__(
        self, settings: Hl7Settings, store: PatientStore, audit: AuditTrail | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.rules = store.rules
        self.audit = audit  # records each sender refused (AR), once

    def handle(self, raw: bytes, peer: str) -> bytes | None:
        """Process one message and return the encoded ACK (None when none is wanted)."""
        try:
            return self._handle(raw, peer)
        except Exception:  # a bug must cost one message an AR, never the listener
            log.exception("unexpected error handling an HL7 message from %s", peer)
            ack = build_ack(
                None,
                AcknowledgmentCode.APPLICATION_REJECT,
                control_id=secrets.token_hex(10),
                timestamp=format_dtm(datetime.now(UTC)),
                sending_application=self.settings.sending_application,
                sending_facility=self.settings.sending_facility,
                problem=Hl7Problem(ErrorCondition.APPLICATION_INTERNAL_ERROR, "internal error"),
            )
            return ack.encode("ascii")

    def _handle(self, raw: bytes, peer: str) -> bytes | None:
        header: MessageHeader | None = None
        message: AdtMessage | None = None
        problem: Hl7Problem | None = None
        charset = ""
        msh: ParsedMessage | None = None
        try:
            decoded = decode_message(raw, self.settings.default_charset)
            charset = decoded.charset
            text = decoded.text
            msh = decoded.msh
        except CharsetError as error:
            text = raw.decode("latin-1")  # only to read MSH for the ACK
            problem = Hl7Problem(ErrorCondition.DATA_TYPE_ERROR, str(error), "MSH", 1, 18)
        try:
            header = read_header(text, msh)
        except Hl7MessageError as error:
            problem = problem or error.problem
        if header is not None and not sender_allowed(header, peer, self.settings.allowed_senders):
            return self._refuse_sender(header, peer, charset)
        if problem is None:
            try:
                message = parse_adt(text, self.settings.accepted_versions, header)
                if self.rules.select_mrn(message.identifiers) is None:
                    types = ", ".join(self.rules.identifier_types)
                    raise Hl7MessageError(
                        Hl7Problem(
                            ErrorCondition.REQUIRED_FIELD_MISSING,
                            f"PID-3 has no identifier of type {types} (the MRN)",
                            "PID",
                            1,
                            3,
                        )
                    )
            except Hl7MessageError as error:
                problem = error.problem
                message = None
        if problem is None:
            code = AcknowledgmentCode.APPLICATION_ACCEPT
        else:
            code = AcknowledgmentCode.APPLICATION_ERROR
        code = self._mode(header, code)
        try:
            outcome = self.store.receive(
                raw=raw,
                header=header,
                charset=charset,
                peer=peer,
                message=message,
                error=None if problem is None else str(Hl7MessageError(problem)),
                ack_code=code.value,
            )
        except StoreError as error:
            log.error("cannot store HL7 message from %s: %s", peer, error)
            code = self._mode(header, AcknowledgmentCode.APPLICATION_REJECT)
            problem = Hl7Problem(
                ErrorCondition.APPLICATION_INTERNAL_ERROR,
                "the message could not be stored; send it again later",
            )
        else:
            if problem is not None:
                log.warning(
                    "rejected %s %s from %s: %s",
                    header.message_type if header else "message",
                    header.message_control_id if header else "",
                    peer,
                    Hl7MessageError(problem),
                )
            elif outcome.state == "duplicate":
                log.info(
                    "duplicate control ID %s from %s acknowledged, not applied",
                    header.message_control_id if header else "",
                    peer,
                )
        if not _ack_wanted(header, problem is None):
            return None
        ack = build_ack(
            header,
            code,
            control_id=secrets.token_hex(10),
            timestamp=format_dtm(datetime.now(UTC)),
            sending_application=self.settings.sending_application,
            sending_facility=self.settings.sending_facility,
            problem=problem,
        )
        return ack.encode(python_codec(charset) or "ascii", errors="replace")

    def _refuse_sender(self, header: MessageHeader, peer: str, charset: str) -> bytes | None:
        """AR for a sender not in allowed_senders: logged (no PHI), not stored, not applied."""
        HL7_MESSAGES_REFUSED.inc()
        log.warning(
            "refused %s %s from %s: sender %s / %s is not in [hl7] allowed_senders",
            header.message_type,
            header.message_control_id,
            peer,
            _namespace(header.sending_application, header).upper() or "(no MSH-3)",
            _namespace(header.sending_facility, header).upper() or "(no MSH-4)",
        )
        if self.audit is not None:
            try:
                self.audit.connection_refused(
                    peer_host=peer_host(peer),
                    service=f"mllp://{self.settings.host}:{self.settings.port}",
                    reason="HL7 sender not in [hl7] allowed_senders",
                    kind="hl7_sender_refused",
                )
            except Exception:
                log.exception("could not audit the refused HL7 sender from %s", peer)
        if not _ack_wanted(header, False):
            return None
        ack = build_ack(
            header,
            self._mode(header, AcknowledgmentCode.APPLICATION_REJECT),
            control_id=secrets.token_hex(10),
            timestamp=format_dtm(datetime.now(UTC)),
            sending_application=self.settings.sending_application,
            sending_facility=self.settings.sending_facility,
            problem=Hl7Problem(
                ErrorCondition.APPLICATION_INTERNAL_ERROR,
                "sender not allowed: MSH-3/MSH-4 or the source address is not a known ADT sender",
                "MSH",
                1,
                3,
            ),
        )
        return ack.encode(python_codec(charset) or "ascii", errors="replace")

    @staticmethod
    def _mode(header: MessageHeader | None, code: AcknowledgmentCode) -> AcknowledgmentCode:
        if header is None or not header.enhanced_mode:
            return code
        return {
            AcknowledgmentCode.APPLICATION_ACCEPT: AcknowledgmentCode.COMMIT_ACCEPT,
            AcknowledgmentCode.APPLICATION_ERROR: AcknowledgmentCode.COMMIT_ERROR,
            AcknowledgmentCode.APPLICATION_REJECT: AcknowledgmentCode.COMMIT_REJECT,
        }[code]

    def server(
        self,
        host: str | None = None,
        port: int | None = None,
        *,
        tls: bool = False,
        on_refused: RefusalRecorder | None = None,
    ) -> MllpServer:
        """An MLLP server (not started) that feeds this listener; with ``tls``, the one on
        ``[hl7] tls_port`` (BCP 195; ``on_refused`` records each refused connection)."""
        return MllpServer(
            self.settings.host if host is None else host,
            (self.settings.tls_port if tls else self.settings.port) if port is None else port,
            self.handle,
            max_connections=self.settings.max_connections,
            max_connections_per_source=self.settings.max_connections_per_source,
            idle_timeout=self.settings.idle_timeout_seconds,
            first_frame_timeout=self.settings.first_frame_timeout_seconds,
            max_message_bytes=self.settings.max_message_bytes,
            tls=listener_context(self.settings) if tls else None,
            on_refused=on_refused,
        )
