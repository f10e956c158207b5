"""Any text in any field of every HL7 message pacsflow sends, and of an ADT it receives, parses
back with no field or segment shift, read through the hl7apy adapter and by hl7apy alone
(property test).

Each message kind is built three times: with every text input "x", with every text input "y"
(fields that differ between the two carry inputs; the others are fixed), and with a generated
text full of delimiters, escape characters, CR/LF and MLLP block characters. The generated
message must have the same segments, each fixed field at its own position with its own value,
and the carrying fields must read back as the text.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from datetime import UTC, datetime

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.emr.document import OrderInfo, ResultDocument, StudyFacts
from integrations.escalation.notification import Notification
from integrations.escalation.rules import Recipient
from integrations.hl7.ack import AcknowledgmentCode, ErrorCondition, Hl7Problem, build_ack
from integrations.hl7.adt import parse_adt, read_header
from integrations.hl7.alert import build_alert
from integrations.hl7.model import escape, field_text, parse, set_field, set_fields, to_er7
from integrations.hl7.oru import MessageRoute, build_oru
from integrations.hl7.priority import PriorityUpdate, build_omi_o23, build_orm_o01
from integrations.settings import PersonSettings
from models.results import UrgencyTier
from tests.emr_samples import adt, chest_result

NOW = datetime(2026, 11, 27, 12, 0, 5, tzinfo=UTC)
HOSTILE = st.text(
    alphabet=st.one_of(st.sampled_from("|^~\\&\r\n\x0b\x1c\t XFS.br"), st.characters()),
    min_size=1,
    max_size=30,
)


def oru(text: str) -> str:
    study = StudyFacts(
        study_instance_uid=text,
        patient_id=text,
        issuer_of_patient_id=text,
        patient_name=text,
        patient_birth_date="19610415",
        patient_sex="M",
        study_date="20260301",
        study_time="101500",
        study_description=text,
        modalities=("DX",),
    )
    order = OrderInfo(
        accession_number=text,
        issuer_of_accession_number=text,
        placer_order_number=text,
        requested_procedure_id=text,
        requested_procedure_description=text,
        requesting_physician=text,
        referring_physician=text,
    )
    model = dataclasses.replace(chest_result().model, name=text, version=text)
    document = ResultDocument(
        study=study,
        order=order,
        generation=1,
        analysis=dataclasses.replace(chest_result(), model=model),
        created_at=NOW,
    )
    route = MessageRoute(text, text, text, text)
    return build_oru(document, None, route, NOW)


def priority_update(text: str) -> PriorityUpdate:
    return PriorityUpdate(
        study_instance_uid=text,
        generation=1,
        accession_number=text,
        patient_id=text,
        issuer_of_patient_id=text,
        patient_name=text,
        patient_birth_date=text,
        patient_sex="M",
        modality=text,
        study_description=text,
        patient_location=text,
        tier=UrgencyTier.CRITICAL,
        primary_finding=text,
        rule=text,
        sending_application=text,
        sending_facility=text,
        receiving_application=text,
        receiving_facility=text,
    )


def alert(text: str) -> str:
    person = Recipient(text, PersonSettings(name=text, hl7_id=text))
    notification = Notification(
        idempotency_key="k" * 32,
        level=0,
        level_label=text,
        round=0,
        team_id="surgery",
        team_name=text,
        recipients=(person, person),
        study_instance_uid=text,
        accession_number=text,
        modality=text,
        patient_id=text,
        patient_location=text,
        finding=text,
        finding_code=f"SCT:{text}",
        probability=0.9,
        tier=text,
        rule=text,
        analyzer=text,
        study_link=text,
        ack_link=text,
        ack_token=text,
        study_closed_at=NOW,
        issued_at=NOW,
    )
    return build_alert(
        notification,
        patient_name=text,
        issuer_of_patient_id=text,
        patient_birth_date=text,
        now=NOW,
        sending_application=text,
        sending_facility=text,
        receiving_application=text,
        receiving_facility=text,
    )


def ack(text: str) -> str:
    header = read_header(adt("A01", "CTRL-42"))
    problem = Hl7Problem(ErrorCondition.DATA_TYPE_ERROR, text, "PID", 1, 7)
    return build_ack(
        header,
        AcknowledgmentCode.APPLICATION_ERROR,
        control_id=text,
        timestamp="20260301101010",
        sending_application=text,
        sending_facility=text,
        problem=problem,
    )


def adt_in(text: str) -> str:
    """An ADT^A01 as a sender's hl7apy would write it, with ``text`` in its free-text fields."""
    message = Message("ADT_A01", version="2.5.1")
    set_fields(
        message.msh,
        {
            3: field_text(text),
            4: field_text(text),
            7: "20260301090000",
            9: "ADT^A01^ADT_A01",
            10: "CTRL-7",
            11: "P",
            12: "2.5.1",
            18: "UNICODE UTF-8",
        },
    )
    set_fields(message.evn, {1: "A01", 2: "20260301090000"})
    pid = message.pid
    set_field(pid, 1, "1")
    set_field(
        pid, 3, field_text(f"ID-{text}", "", "", "HOSP", "MR"), field_text(text, "", "", text)
    )
    set_fields(pid, {5: field_text((text, ""), text, text), 7: "19610415", 8: "M"})
    set_fields(
        message.pv1,
        {
            1: "1",
            2: "I",
            3: field_text(text, text, text, text),
            7: field_text("1234", (text,), text),
            19: field_text(text, "", "", "HOSP", "VN"),
        },
    )
    return to_er7(message)


KINDS: dict[str, Callable[[str], str]] = {
    "ORU^R01 result": oru,
    "ORU^R01 alert": alert,
    "ORM^O01": lambda text: build_orm_o01(priority_update(text), NOW),
    "OMI^O23": lambda text: build_omi_o23(priority_update(text), NOW),
    "ACK": ack,
    "ADT^A01 received": adt_in,
}
# Where each kind carries an input as plain text: (segment, field, component).
CARRIERS: dict[str, tuple[tuple[str, int, int], ...]] = {
    "ORU^R01 result": (("MSH", 3, 1), ("OBR", 18, 1), ("OBR", 19, 1), ("PID", 3, 1)),
    "ORU^R01 alert": (("MSH", 3, 1), ("PV1", 3, 1), ("ORC", 3, 1), ("OBR", 28, 2)),
    "ORM^O01": (("MSH", 3, 1), ("OBR", 4, 2), ("OBR", 18, 1), ("PV1", 3, 1), ("PID", 7, 1)),
    "OMI^O23": (("MSH", 4, 1), ("OBR", 4, 2), ("IPC", 1, 1), ("IPC", 3, 1)),
    "ACK": (("MSH", 3, 1), ("MSH", 10, 1)),
    "ADT^A01 received": (("MSH", 3, 1), ("PID", 5, 2), ("PV1", 3, 4), ("PV1", 7, 3)),
}


def layout(er7: str) -> list[tuple[str, tuple[str, ...]]]:
    assert "\n" not in er7
    return [(segment.name, segment.fields) for segment in parse(er7).segments]


def hl7apy_fields(er7: str) -> list[tuple[str, dict[int, str]]]:
    message = parse_message(er7, validation_level=VALIDATION_LEVEL.TOLERANT, find_groups=False)
    out = []
    for segment in message.children:
        fields: dict[int, str] = {}
        for field in segment.children:
            number = int(field.name.rsplit("_", 1)[1])
            fields[number] = fields.get(number, "") + field.to_er7()  # repetitions join
        out.append((segment.name, fields))
    return out


def line_breaks(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@functools.cache
def fixed_fields(build: Callable[[str], str]) -> list[tuple[str, dict[int, str]]]:
    """Per segment, the fields that are the same whatever the inputs (by our reader)."""
    fixed = []
    for (name, x_fields), (_, y_fields) in zip(layout(build("x")), layout(build("y")), strict=True):
        same = {
            number: x_fields[number]
            for number in range(1, min(len(x_fields), len(y_fields)))
            if x_fields[number] == y_fields[number]
        }
        fixed.append((name, same))
    return fixed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=HOSTILE)
def test_any_text_in_any_field_parses_back_without_a_shift(text: str) -> None:
    for kind, build in KINDS.items():
        er7 = build(text)
        fixed = fixed_fields(build)
        # our reader: the same segments, every fixed field in its place
        segments = parse(er7).segments
        assert [s.name for s in segments] == [name for name, _ in fixed], kind
        for segment, (name, fields) in zip(segments, fixed, strict=True):
            for number, value in fields.items():
                assert segment.raw(number) == value, f"{kind} {name}-{number} shifted"
        for name, number, component in CARRIERS[kind]:
            (segment, *_) = [s for s in segments if s.name == name]
            read = segment.value(number, component) if number > 2 or name != "MSH" else ""
            expected = {line_breaks(text)}
            if not escape(text).strip():
                expected.add("")  # hl7apy may write a blank value as an empty field
            assert line_breaks(read) in expected, f"{kind} {name}-{number}"
        # hl7apy: the same segments and the same fixed fields
        parsed = hl7apy_fields(er7)
        assert [name for name, _ in parsed] == [name for name, _ in fixed], f"{kind} (hl7apy)"
        for (name, fields), (_, hl7apy_values) in zip(fixed, parsed, strict=True):
            for number, value in fields.items():
                if name == "MSH" and number <= 2:
                    continue
                assert hl7apy_values.get(number, "") == value, f"{kind} {name}-{number} (hl7apy)"


def test_a_segment_in_a_study_description_stays_text() -> None:
    """The reported case: StudyDescription 'HEAD\\rPID|1||EVIL' put a PID into the ORM."""
    hostile = "HEAD\rPID|1||EVIL"
    for build in (build_orm_o01, build_omi_o23):
        update = dataclasses.replace(priority_update("x"), study_description=hostile)
        segments = parse(build(update, NOW)).segments
        assert [s.name for s in segments].count("PID") == 1
        (obr,) = [s for s in segments if s.name == "OBR"]
        assert obr.value(4, 2) == "HEAD\nPID|1||EVIL"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=HOSTILE)
def test_any_text_in_a_received_adt_reaches_the_patient_context_as_sent(text: str) -> None:
    message = parse_adt(adt_in(text), ["2.5.1"])
    sent = line_breaks(text)
    assert message.identifiers[0].id_number == f"ID-{sent}".strip()
    assert message.name.family == sent and message.name.given == sent
    assert message.visit is not None
    location = message.visit.location
    assert (location.point_of_care, location.room, location.bed, location.facility) == (sent,) * 4
    assert message.visit.attending_doctor.family == sent
    assert message.birth_date == "19610415" and message.sex == "M"
    assert message.header.message_control_id == "CTRL-7"
