"""The MSH segment as a typed value, and HL7 v2 date/time formats (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

from integrations.hl7.model import Delimiters, ParsedMessage

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2}(?:\.\d{1,4})?)?([+-]\d{4})?$")
_DT = re.compile(r"^\d{4}(\d{2}(\d{2})?)?$")


@dataclass(frozen=True)
class MessageHeader:
    """What pacsflow needs from MSH to process a message and to acknowledge it."""

    delimiters: Delimiters
    sending_application: str  # MSH-3 as written (HD)
    sending_facility: str  # MSH-4
    receiving_application: str  # MSH-5
    receiving_facility: str  # MSH-6
    date_time_of_message: str  # MSH-7
    message_code: str  # MSH-9.1
    trigger_event: str  # MSH-9.2
    message_structure: str  # MSH-9.3 (may be empty before v2.3.1)
    message_control_id: str  # MSH-10
    processing_id: str  # MSH-11.1
    version_id: str  # MSH-12.1
    accept_acknowledgment_type: str  # MSH-15 (empty: original acknowledgment mode)
    application_acknowledgment_type: str  # MSH-16
    character_set: str  # MSH-18, first repetition
    source: ParsedMessage | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_message(cls, parsed: ParsedMessage) -> MessageHeader:
        msh = parsed.msh
        message_type = msh.first(9)
        return cls(
            delimiters=msh.delimiters,
            sending_application=msh.raw(3),
            sending_facility=msh.raw(4),
            receiving_application=msh.raw(5),
            receiving_facility=msh.raw(6),
            date_time_of_message=msh.value(7),
            message_code=message_type.component(1).strip().upper(),
            trigger_event=message_type.component(2).strip().upper(),
            message_structure=message_type.component(3).strip().upper(),
            message_control_id=msh.value(10).strip(),
            processing_id=msh.value(11).strip(),
            version_id=parsed.declared_version,
            accept_acknowledgment_type=msh.value(15).strip().upper(),
            application_acknowledgment_type=msh.value(16).strip().upper(),
            character_set=msh.value(18).strip(),
            source=parsed,
        )

    @property
    def message_type(self) -> str:
        """``ADT^A01`` style, for logs and the inbox table."""
        return f"{self.message_code}^{self.trigger_event}"

    @property
    def enhanced_mode(self) -> bool:
        """True when MSH-15 asks for enhanced acknowledgment (accept ACKs CA/CE/CR)."""
        return bool(self.accept_acknowledgment_type)


def is_valid_dtm(value: str) -> bool:
    """True for an HL7 DTM/TS value: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]."""
    match = _DTM.match(value)
    if not match:
        return False
    return _plausible(match.groups())


def is_valid_dt(value: str) -> bool:
    """True for an HL7 DT value: YYYY[MM[DD]]."""
    return bool(_DT.match(value)) and is_valid_dtm(value)


def _plausible(groups: tuple[str | None, ...]) -> bool:
    _, month, day, hour, minute, second, _ = groups
    limits = ((month, 1, 12), (day, 1, 31), (hour, 0, 23), (minute, 0, 59))
    if any(part is not None and not low <= int(part) <= high for part, low, high in limits):
        return False
    return second is None or 0 <= float(second) < 61


def parse_dtm(value: str) -> datetime | None:
    """An HL7 DTM/TS as an aware datetime (UTC when no offset is given); None if invalid."""
    match = _DTM.match(value.strip())
    if not match or not _plausible(match.groups()):
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    whole_second = float(second or 0)
    try:
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(whole_second),
            round((whole_second % 1) * 1_000_000),
        )
    except ValueError:
        return None
    if offset:
        return datetime.strptime(moment.strftime("%Y%m%d%H%M%S.%f") + offset, "%Y%m%d%H%M%S.%f%z")
    return moment.replace(tzinfo=UTC)


def format_dtm(moment: datetime) -> str:
    """A datetime as HL7 DTM with seconds and UTC offset, e.g. ``20260101120000+0000``."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.strftime("%Y%m%d%H%M%S%z")
