"""HL7 v2 acknowledgments: build the ACK pacsflow returns, read the ACK a peer returns (pure).

Original mode (MSH-15 empty): MSA-1 is AA (applied), AE (error in the message: the reason is
in MSA-3 and ERR) or AR (rejected: the receiver could not process or store it). Enhanced mode
(MSH-15 set): the accept acknowledgment CA/CE/CR says whether the message was committed to
safe storage. ERR follows the layout of the message's version: ERR-1 up to v2.4, ERR-2/3/4/8
from v2.5 on. Error condition codes are HL7 table 0357.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from integrations.hl7.er7 import (
    DEFAULT_DELIMITERS,
    Delimiters,
    Er7Error,
    build_segment,
    component_text,
    escape,
    parse_segments,
    subcomponent_text,
)
from integrations.hl7.header import MessageHeader


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
    """The ACK for a received message as ER7 text (segments ending in CR).

    ``header`` is the received MSH when it could be read; without it (no MSH at all) the ACK
    uses the default delimiters and v2.5.1, and MSA-2 is empty.
    """
    d = header.delimiters if header else DEFAULT_DELIMITERS
    version = header.version_id if header and header.version_id else "2.5.1"
    trigger = header.trigger_event if header else ""
    structured = _version_at_least(version, (2, 3, 1))
    # MSH-9.3 (message structure) exists from v2.3.1 on.
    message_type = component_text("ACK", trigger, "ACK" if structured else "", delimiters=d)
    msh = build_segment(
        "MSH",
        {
            3: escape(sending_application, d),
            4: escape(sending_facility, d),
            5: header.sending_application if header else "",
            6: header.sending_facility if header else "",
            7: timestamp,
            9: message_type,
            10: escape(control_id, d),
            11: escape(header.processing_id, d) if header and header.processing_id else "P",
            12: escape(version, d),
        },
        d,
    )
    reason = _ascii(problem.reason) if problem else ""
    msa_text = ""
    if problem:
        # cut the text, not its escaped form: a cut escape sequence would garble MSA-3
        msa_text = escape(f"{problem.condition.text}: {reason}"[:80], d)
    msa = build_segment(
        "MSA",
        {
            1: code.value,
            2: escape(header.message_control_id, d) if header else "",
            3: msa_text,
        },
        d,
    )
    segments = [msh, msa]
    if problem:
        segments.append(_err_segment(problem, version, d))
    return "\r".join(segments) + "\r"


def _err_segment(problem: Hl7Problem, version: str, d: Delimiters) -> str:
    code = str(problem.condition.value)
    text = problem.condition.text
    field = "" if problem.field is None else str(problem.field)
    component = "" if problem.component is None else str(problem.component)
    sequence = str(problem.sequence) if problem.segment else ""
    if _version_at_least(version, (2, 5)):
        location = component_text(
            problem.segment, sequence, field, "1" if field else "", component, delimiters=d
        )
        return build_segment(
            "ERR",
            {
                2: location,
                3: component_text(code, text, "HL70357", delimiters=d),
                4: "E",
                8: escape(_ascii(problem.reason), d),
            },
            d,
        )
    # v2.3-2.4: ERR-1 "error code and location" = segment^sequence^field^code&text&HL70357
    condition = subcomponent_text(code, text, "HL70357", delimiters=d)
    location = d.component.join([escape(problem.segment, d), sequence, field, condition]).rstrip(
        d.component
    )
    return build_segment("ERR", {1: location}, d)


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
        segments = parse_segments(text)
    except Er7Error as error:
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
