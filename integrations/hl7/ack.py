"""HL7 v2 acknowledgments with hl7apy: build the ACK pacsflow returns, read a peer's (pure).

Original mode (MSH-15 empty): MSA-1 is AA (applied), AE (error in the message: the reason is
in MSA-3 and ERR) or AR (rejected: the receiver could not process or store it). Enhanced mode
(MSH-15 set): the accept acknowledgment CA/CE/CR says whether the message was committed to
safe storage. ERR follows the layout of the message's version: ERR-1 up to v2.4, ERR-2/3/4/8
from v2.5 on. Error condition codes are HL7 table 0357.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from hl7apy.core import Message

from integrations.hl7.header import MessageHeader
from integrations.hl7.model import (
    DEFAULT_VERSION,
    SEGMENT_TERMINATOR,
    Hl7SyntaxError,
    field_text,
    known_version,
    parse,
    recoded,
    set_fields,
    to_er7,
)


class AcknowledgmentCode(StrEnum):
    """HL7 table 0008."""

    APPLICATION_ACCEPT = "AA"
    APPLICATION_ERROR = "AE"
    APPLICATION_REJECT = "AR"
    COMMIT_ACCEPT = "CA"
    COMMIT_ERROR = "CE"
    COMMIT_REJECT = "CR"

    @property
    def accepted(self) -> bool:
        return self in (AcknowledgmentCode.APPLICATION_ACCEPT, AcknowledgmentCode.COMMIT_ACCEPT)

    @property
    def error(self) -> bool:
        return self in (AcknowledgmentCode.APPLICATION_ERROR, AcknowledgmentCode.COMMIT_ERROR)

    @property
    def rejected(self) -> bool:
        return self in (AcknowledgmentCode.APPLICATION_REJECT, AcknowledgmentCode.COMMIT_REJECT)


class ErrorCondition(IntEnum):
    """HL7 table 0357, message error condition codes."""

    SEGMENT_SEQUENCE_ERROR = 100
    REQUIRED_FIELD_MISSING = 101
    DATA_TYPE_ERROR = 102
    TABLE_VALUE_NOT_FOUND = 103
    UNSUPPORTED_MESSAGE_TYPE = 200
    UNSUPPORTED_EVENT_CODE = 201
    UNSUPPORTED_PROCESSING_ID = 202
    UNSUPPORTED_VERSION_ID = 203
    UNKNOWN_KEY_IDENTIFIER = 204
    DUPLICATE_KEY_IDENTIFIER = 205
    APPLICATION_RECORD_LOCKED = 206
    APPLICATION_INTERNAL_ERROR = 207

    @property
    def text(self) -> str:
        return _CONDITION_TEXT[self]


_CONDITION_TEXT = {
    ErrorCondition.SEGMENT_SEQUENCE_ERROR: "Segment sequence error",
    ErrorCondition.REQUIRED_FIELD_MISSING: "Required field missing",
    ErrorCondition.DATA_TYPE_ERROR: "Data type error",
    ErrorCondition.TABLE_VALUE_NOT_FOUND: "Table value not found",
    ErrorCondition.UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type",
    ErrorCondition.UNSUPPORTED_EVENT_CODE: "Unsupported event code",
    ErrorCondition.UNSUPPORTED_PROCESSING_ID: "Unsupported processing id",
    ErrorCondition.UNSUPPORTED_VERSION_ID: "Unsupported version id",
    ErrorCondition.UNKNOWN_KEY_IDENTIFIER: "Unknown key identifier",
    ErrorCondition.DUPLICATE_KEY_IDENTIFIER: "Duplicate key identifier",
    ErrorCondition.APPLICATION_RECORD_LOCKED: "Application record locked",
    ErrorCondition.APPLICATION_INTERNAL_ERROR: "Application internal error",
}


@dataclass(frozen=True)
class Hl7Problem:
    """Why a message was not applied, and where in it (for MSA-3 and ERR)."""

    condition: ErrorCondition
    reason: str
    segment: str = ""
    sequence: int = 1
    field: int | None = None
    component: int | None = None

    @property
    def location(self) -> str:
        where = self.segment
        if self.segment and self.field is not None:
            where += f"-{self.field}"
            if self.component is not None:
                where += f".{self.component}"
        return where


class Hl7MessageError(ValueError):
    """A received message cannot be applied; carries the problem to acknowledge with."""

    def __init__(self, problem: Hl7Problem) -> None:
        self.problem = problem
        where = f" ({problem.location})" if problem.location else ""
        super().__init__(
            f"{problem.condition.value} {problem.condition.text}{where}: {problem.reason}"
        )


def _ascii(text: str) -> str:
    """Acknowledgment text stays ASCII whatever the message's character set."""
    return text.encode("ascii", "replace").decode("ascii")


def _version_at_least(version: str, minimum: tuple[int, ...]) -> bool:
    try:
        return tuple(int(part) for part in version.split(".")) >= minimum
    except ValueError:
        return True


def build_ack(
    header: MessageHeader | None,
    code: AcknowledgmentCode,
    *,
    control_id: str,
    timestamp: str,
    sending_application: str,
    sending_facility: str,
    problem: Hl7Problem | None = None,
) -> str:
    """The ACK for a received message as ER7 text (segments ending in CR), built with hl7apy
    in the message's version (v2.5.1 when hl7apy does not know it, or without a header).

    ``header`` is the received MSH when it could be read; without it (no MSH at all) MSA-2 is
    empty. The ACK is written with the default delimiters, which its MSH-1/MSH-2 declare.
    An ACK without a problem (and with MSA-2) reuses the hl7apy message of the last one to the same sender
    and event (:data:`_REUSED`): only MSH-7, MSH-10 and MSA-2 change, a tenth of the cost.
    """
    declared = header.version_id if header and header.version_id else ""
    constant = (
        declared,
        header.trigger_event if header else "",
        header.processing_id if header else "",
        recoded(header.sending_application, header.delimiters) if header else "",
        recoded(header.sending_facility, header.delimiters) if header else "",
        sending_application,
        sending_facility,
        code.value,
    )
    answered = field_text(header.message_control_id) if header else ""
    if problem is None and answered:
        with _REUSED_LOCK:
            message = _REUSED.pop(constant, None) or _ack_message(*constant)
            _REUSED[constant] = message  # most recently used last
            while len(_REUSED) > _REUSED_LIMIT:
                del _REUSED[next(iter(_REUSED))]
            _set_per_message(message, timestamp, control_id, answered)
            return to_er7(message) + SEGMENT_TERMINATOR
    message = _ack_message(*constant)
    _set_per_message(message, timestamp, control_id, answered)
    if problem is not None:
        # cut the text, not its escaped form: a cut escape sequence would garble MSA-3
        reason = f"{problem.condition.text}: {_ascii(problem.reason)}"[:80]
        set_fields(message.msa, {3: field_text(reason)})
        _set_err(message, problem, message.version)
    return to_er7(message) + SEGMENT_TERMINATOR


_REUSED: dict[tuple[str, ...], Message] = {}
_REUSED_LIMIT = 64
_REUSED_LOCK = threading.Lock()


def _ack_message(
    declared: str,
    trigger: str,
    processing_id: str,
    receiving_application: str,
    receiving_facility: str,
    sending_application: str,
    sending_facility: str,
    code: str,
) -> Message:
    """An ACK with every field that is the same for each message of one sender and event."""
    version = declared if declared and known_version(declared) else DEFAULT_VERSION
    message = Message("ACK", version=version)
    # MSH-9.3 (message structure) exists from v2.3.1 on.
    structured = _version_at_least(version, (2, 3, 1))
    set_fields(
        message.msh,
        {
            3: field_text(sending_application),
            4: field_text(sending_facility),
            5: receiving_application,  # MSH-3/4 of the message, already ER7
            6: receiving_facility,
            9: field_text("ACK", trigger, "ACK" if structured else ""),
            11: field_text(processing_id or "P"),
            12: field_text(declared or version),
        },
    )
    set_fields(message.msa, {1: field_text(code)})
    return message


def _set_per_message(message: Message, timestamp: str, control_id: str, answered: str) -> None:
    set_fields(message.msh, {7: field_text(timestamp), 10: field_text(control_id)})
    set_fields(message.msa, {2: answered})


def _set_err(message: Message, problem: Hl7Problem, version: str) -> None:
    code = str(problem.condition.value)
    text = problem.condition.text
    field = "" if problem.field is None else str(problem.field)
    component = "" if problem.component is None else str(problem.component)
    sequence = str(problem.sequence) if problem.segment else ""
    err = message.add_segment("ERR")
    if _version_at_least(version, (2, 5)):
        set_fields(
            err,
            {
                2: field_text(problem.segment, sequence, field, "1" if field else "", component),
                3: field_text(code, text, "HL70357"),
                4: field_text("E"),
                8: field_text(_ascii(problem.reason)),
            },
        )
    else:  # v2.3-2.4: ERR-1 "error code and location" = segment^sequence^field^code&text&table
        set_fields(err, {1: field_text(problem.segment, sequence, field, (code, text, "HL70357"))})


@dataclass(frozen=True)
class AckReply:
    """A peer's acknowledgment of a message pacsflow sent."""

    code: AcknowledgmentCode
    message_control_id: str  # MSA-2: the control ID being acknowledged
    text: str  # MSA-3 and ERR details, for the outbox's last_error

    @property
    def accepted(self) -> bool:
        return self.code.accepted


class AckParseError(ValueError):
    """The peer's answer is not an HL7 acknowledgment."""


def parse_ack(text: str) -> AckReply:
    """Read MSA (and ERR) from an acknowledgment message."""
    try:
        segments = parse(text).segments
    except Hl7SyntaxError as error:
        raise AckParseError(f"answer is not HL7: {error}") from None
    msa = next((segment for segment in segments if segment.name == "MSA"), None)
    if msa is None:
        raise AckParseError("answer has no MSA segment")
    try:
        code = AcknowledgmentCode(msa.value(1).strip().upper())
    except ValueError:
        raise AckParseError(f"MSA-1 {msa.value(1)!r} is not an acknowledgment code") from None
    details = []
    for err in (segment for segment in segments if segment.name == "ERR"):
        condition = err.first(3).component(2) or err.first(1).component(4, 2)
        message = err.value(8) or msa.value(3)
        if condition and message.startswith(condition):
            condition = ""
        text = ": ".join(part for part in (condition, message) if part)
        if text and text not in details:
            details.append(text)
    if not details and msa.value(3):
        details.append(msa.value(3))
    return AckReply(code, msa.value(2).strip(), "; ".join(details))
