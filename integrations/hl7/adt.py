"""HL7 v2.3-2.5.1 ADT messages, parsed by hl7apy: read and check what the patient context
needs (pure).

:func:`read_header` gets MSH from any text (so even a message that fails every other check can
be acknowledged with its control ID); :func:`parse_adt` checks the message against the
standard of its declared version (segment IDs and required segments from hl7apy's reference
tables, data types and table values of the fields pacsflow uses) and returns an
:class:`AdtMessage`. Every refusal is an :class:`Hl7MessageError` carrying the HL7 table 0357
condition and the location, which the listener turns into an AE acknowledgment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from integrations.emr.context import Location, PatientIdentifier, PersonName, Provider
from integrations.hl7.ack import ErrorCondition, Hl7MessageError, Hl7Problem
from integrations.hl7.header import MessageHeader, is_valid_dt, is_valid_dtm
from integrations.hl7.model import Hl7SyntaxError, ParsedMessage, Repetition, Segment, parse
from integrations.hl7.structure import (
    is_known_segment,
    message_structure,
    required_segments,
)

# The trigger events pacsflow applies to the patient context.
APPLIED_EVENTS = ("A01", "A02", "A03", "A04", "A08", "A11", "A13", "A40")
PROCESSING_IDS = ("P", "T", "D")  # HL7 table 0103
ADMINISTRATIVE_SEX = ("F", "M", "O", "U", "A", "N")  # HL7 table 0001
_READ_SEGMENTS = frozenset({"EVN", "PID", "PV1", "MRG"})  # hl7apy parses these only


@dataclass(frozen=True)
class Visit:
    """PV1: where the patient is and who looks after them."""

    patient_class: str  # PV1-2, table 0004
    location: Location  # PV1-3
    prior_location: Location  # PV1-6
    attending_doctor: Provider  # PV1-7
    referring_doctor: Provider  # PV1-8
    admitting_doctor: Provider  # PV1-17
    visit_number: PatientIdentifier | None  # PV1-19
    admitted_at: str  # PV1-44
    discharged_at: str  # PV1-45


@dataclass(frozen=True)
class AdtMessage:
    header: MessageHeader
    structure: str  # e.g. ADT_A01
    recorded_at: str  # EVN-2
    identifiers: tuple[PatientIdentifier, ...]  # PID-3, every repetition
    name: PersonName  # PID-5, the legal name when marked
    birth_date: str  # PID-7
    sex: str  # PID-8
    visit: Visit | None  # PV1
    prior_identifiers: tuple[PatientIdentifier, ...]  # MRG-1 (A40)

    @property
    def event(self) -> str:
        return self.header.trigger_event

    @property
    def applied(self) -> bool:
        """True for the events pacsflow applies; others are stored and acknowledged only."""
        return self.event in APPLIED_EVENTS


def _problem(
    condition: ErrorCondition,
    reason: str,
    segment: str = "",
    field: int | None = None,
    component: int | None = None,
) -> Hl7MessageError:
    return Hl7MessageError(Hl7Problem(condition, reason, segment, 1, field, component))


def read_header(text: str, parsed: ParsedMessage | None = None) -> MessageHeader:
    """MSH as a typed value (hl7apy parses MSH alone, unless ``parsed`` already has);
    refuses text that is not ER7."""
    try:
        return MessageHeader.from_message(parsed or parse(text, header_only=True))
    except Hl7SyntaxError as error:
        raise _problem(ErrorCondition.SEGMENT_SEQUENCE_ERROR, str(error)) from None


def check_header(header: MessageHeader, accepted_versions: Iterable[str]) -> None:
    """The MSH checks every received message must pass, whatever its type."""
    accepted = tuple(accepted_versions)
    if not header.message_control_id:
        raise _problem(
            ErrorCondition.REQUIRED_FIELD_MISSING, "MSH-10 message control ID is empty", "MSH", 10
        )
    if header.version_id not in accepted:
        raise _problem(
            ErrorCondition.UNSUPPORTED_VERSION_ID,
            f"version {header.version_id or '(empty)'} is not accepted; accepted: {', '.join(accepted)}",
            "MSH",
            12,
        )
    if header.processing_id not in PROCESSING_IDS:
        raise _problem(
            ErrorCondition.UNSUPPORTED_PROCESSING_ID,
            f"processing ID {header.processing_id!r} is not one of {', '.join(PROCESSING_IDS)}",
            "MSH",
            11,
        )


def _identifier(repetition: Repetition) -> PatientIdentifier:
    return PatientIdentifier(
        id_number=repetition.component(1).strip(),
        assigning_authority=repetition.component(4, 1).strip(),
        authority_universal_id=repetition.component(4, 2).strip(),
        authority_universal_id_type=repetition.component(4, 3).strip(),
        identifier_type_code=repetition.component(5).strip().upper(),
    )


def _name(segment: Segment, field: int) -> PersonName:
    names = segment.repetitions(field)
    if not names:
        return PersonName()
    legal = next((name for name in names if name.component(7).upper() == "L"), names[0])
    return PersonName(
        family=legal.component(1, 1),
        given=legal.component(2),
        middle=legal.component(3),
        suffix=legal.component(4),
        prefix=legal.component(5),
    )


def _location(repetition: Repetition) -> Location:
    return Location(
        point_of_care=repetition.component(1),
        room=repetition.component(2),
        bed=repetition.component(3),
        facility=repetition.component(4, 1),
        description=repetition.component(9),
    )


def _provider(repetition: Repetition) -> Provider:
    return Provider(
        id_number=repetition.component(1),
        family=repetition.component(2, 1),
        given=repetition.component(3),
        middle=repetition.component(4),
        suffix=repetition.component(5),
        prefix=repetition.component(6),
        assigning_authority=repetition.component(9, 1),
    )


def _checked_time(segment: Segment, field: int, *, date_only: bool = False) -> str:
    value = segment.value(field).strip()
    valid = is_valid_dt(value) if date_only else is_valid_dtm(value)
    if value and not valid:
        kind = "DT (YYYYMMDD)" if date_only else "DTM (YYYYMMDDHHMMSS)"
        raise _problem(
            ErrorCondition.DATA_TYPE_ERROR,
            f"{segment.name}-{field} {value!r} is not a valid {kind}",
            segment.name,
            field,
        )
    return value


def _visit(pv1: Segment) -> Visit:
    visit_numbers = pv1.repetitions(19)
    return Visit(
        patient_class=pv1.value(2).strip().upper(),
        location=_location(pv1.first(3)),
        prior_location=_location(pv1.first(6)),
        attending_doctor=_provider(pv1.first(7)),
        referring_doctor=_provider(pv1.first(8)),
        admitting_doctor=_provider(pv1.first(17)),
        visit_number=_identifier(visit_numbers[0]) if visit_numbers else None,
        admitted_at=_checked_time(pv1, 44),
        discharged_at=_checked_time(pv1, 45),
    )


def parse_adt(
    text: str, accepted_versions: Iterable[str], header: MessageHeader | None = None
) -> AdtMessage:
    """Read an ADT message, or raise :class:`Hl7MessageError` saying what is wrong and where.

    ``header`` is :func:`read_header` of the same text when the caller has it (MSH is then
    not parsed again)."""
    header = header if header is not None and header.source is not None else read_header(text)
    check_header(header, accepted_versions)
    if header.message_code != "ADT":
        raise _problem(
            ErrorCondition.UNSUPPORTED_MESSAGE_TYPE,
            f"message type {header.message_code or '(empty)'} is not accepted here; only ADT",
            "MSH",
            9,
            1,
        )
    version = header.version_id
    structure = message_structure("ADT", header.trigger_event, header.message_structure, version)
    if not structure:
        raise _problem(
            ErrorCondition.UNSUPPORTED_EVENT_CODE,
            f"ADT^{header.trigger_event or '(empty)'} has no message structure in v{version}",
            "MSH",
            9,
            2,
        )
    assert header.source is not None
    for index, name in enumerate((line[:3] for line in header.source.lines), start=1):
        if not is_known_segment(name, version):  # hl7apy would refuse it without saying where
            raise Hl7MessageError(
                Hl7Problem(
                    ErrorCondition.SEGMENT_SEQUENCE_ERROR,
                    f"segment {index} {name!r} is not a v{version} segment",
                    name,
                    1,
                )
            )
    try:
        segments = header.source.with_body(_READ_SEGMENTS).segments
    except Hl7SyntaxError as error:
        raise _problem(ErrorCondition.SEGMENT_SEQUENCE_ERROR, str(error)) from None
    present = {line[:3] for line in header.source.lines}
    for required in required_segments(structure, version):
        if required not in present:
            raise _problem(
                ErrorCondition.SEGMENT_SEQUENCE_ERROR,
                f"required segment {required} of {structure} is missing",
                required,
            )
    try:  # hl7apy parses each field when it is read
        return _read_adt(header, structure, segments)
    except Hl7SyntaxError as error:
        raise _problem(ErrorCondition.SEGMENT_SEQUENCE_ERROR, str(error)) from None


def _read_adt(header: MessageHeader, structure: str, segments: Iterable[Segment]) -> AdtMessage:
    first: dict[str, Segment] = {}
    for segment in segments:
        first.setdefault(segment.name, segment)
    pid = first["PID"]
    identifiers = tuple(
        identifier
        for identifier in (_identifier(rep) for rep in pid.repetitions(3))
        if identifier.id_number
    )
    if not identifiers:
        raise _problem(
            ErrorCondition.REQUIRED_FIELD_MISSING,
            "PID-3 patient identifier list is empty",
            "PID",
            3,
        )
    sex = pid.value(8).strip().upper()
    if sex and sex not in ADMINISTRATIVE_SEX:
        raise _problem(
            ErrorCondition.TABLE_VALUE_NOT_FOUND,
            f"PID-8 {sex!r} is not in HL7 table 0001 ({', '.join(ADMINISTRATIVE_SEX)})",
            "PID",
            8,
        )
    birth = _checked_time(pid, 7)
    evn = first.get("EVN")
    recorded_at = _checked_time(evn, 2) if evn else ""
    prior: tuple[PatientIdentifier, ...] = ()
    if "MRG" in first:
        mrg = first["MRG"]
        prior = tuple(
            identifier
            for identifier in (_identifier(rep) for rep in mrg.repetitions(1))
            if identifier.id_number
        )
        if not prior and header.trigger_event == "A40":
            raise _problem(
                ErrorCondition.REQUIRED_FIELD_MISSING,
                "MRG-1 prior patient identifier list is empty",
                "MRG",
                1,
            )
    return AdtMessage(
        header=header,
        structure=structure,
        recorded_at=recorded_at,
        identifiers=identifiers,
        name=_name(pid, 5),
        birth_date=birth,
        sex=sex,
        visit=_visit(first["PV1"]) if "PV1" in first else None,
        prior_identifiers=prior,
    )
