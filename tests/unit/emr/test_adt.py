"""ADT parsing and checking, v2.3 to v2.5.1, every event pacsflow applies."""

from __future__ import annotations

import pytest

from integrations.hl7.ack import ErrorCondition, Hl7MessageError
from integrations.hl7.adt import APPLIED_EVENTS, parse_adt
from tests.emr_samples import adt

VERSIONS = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1"]


def problem_of(text: str, versions: list[str] = VERSIONS) -> tuple[ErrorCondition, str, str]:
    with pytest.raises(Hl7MessageError) as caught:
        parse_adt(text, versions)
    problem = caught.value.problem
    return problem.condition, problem.location, problem.reason


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("event", APPLIED_EVENTS)
def test_every_applied_event_parses_in_every_version(version: str, event: str) -> None:
    structure = None if version != "2.3" else ""  # v2.3 senders leave MSH-9.3 out
    message = parse_adt(
        adt(event, f"C-{event}", version=version, prior_mrn="999", structure=structure), VERSIONS
    )
    assert message.event == event and message.applied
    assert message.identifiers[0].id_number == "12345"
    assert message.identifiers[0].identifier_type_code == "MR"
    assert message.identifiers[0].authority_universal_id == "1.2.840.99999.1"
    assert message.name.family == "MÜLLER"
    assert message.birth_date == "19610415" and message.sex == "M"
    if event == "A40":
        assert message.structure == "ADT_A39"
        assert [item.id_number for item in message.prior_identifiers] == ["999"]
    else:
        assert message.visit is not None
        assert message.visit.location.point_of_care == "WARD-A"
        assert message.visit.attending_doctor.family == "CUDDY"
        assert (
            message.visit.visit_number is not None
            and message.visit.visit_number.id_number == "V-12345"
        )


def test_other_adt_events_parse_but_are_not_applied() -> None:
    message = parse_adt(adt("A31", "C-A31", structure="ADT_A05"), VERSIONS)
    assert not message.applied


def test_legal_name_is_preferred_among_repetitions() -> None:
    text = adt("A08", "N1").replace("MÜLLER^JÜRGEN^^^^^L", "JUERGEN^M^^^^^A~MÜLLER^JÜRGEN^^^^^L")
    assert parse_adt(text, VERSIONS).name.given == "JÜRGEN"


@pytest.mark.parametrize(
    "text, condition, location, reason",
    [
        (adt("A01", "V1", version="2.2"), ErrorCondition.UNSUPPORTED_VERSION_ID, "MSH-12", "2.2"),
        (adt("A01", "V2", version="2.6"), ErrorCondition.UNSUPPORTED_VERSION_ID, "MSH-12", "2.6"),
        (
            adt("A01", "B1", extra_segments=("XX1|junk",)),
            ErrorCondition.SEGMENT_SEQUENCE_ERROR,
            "XX1",
            "not a v2.5.1 segment",
        ),
        (
            adt("A01", "B2", extra_segments=("ZPI|local|data",)) + "garbage line\r",
            ErrorCondition.SEGMENT_SEQUENCE_ERROR,
            "",
            "segment ID",
        ),
        (
            adt("A01", "B3").replace("PV1|", "PV9|"),
            ErrorCondition.SEGMENT_SEQUENCE_ERROR,
            "PV9",
            "not a v2.5.1 segment",
        ),
        (
            adt("A01", "M1").replace("\rPV1|", "\rNTE|"),
            ErrorCondition.SEGMENT_SEQUENCE_ERROR,
            "PV1",
            "required segment PV1",
        ),
        (
            adt("A01", "M2").replace("\rEVN|A01|20260301090000", ""),
            ErrorCondition.SEGMENT_SEQUENCE_ERROR,
            "EVN",
            "EVN",
        ),
        (
            adt("A01", "").replace("||P|", "||P|"),
            ErrorCondition.REQUIRED_FIELD_MISSING,
            "MSH-10",
            "control ID",
        ),
        (
            adt("A01", "T1").replace("|P|2.5.1", "|X|2.5.1"),
            ErrorCondition.UNSUPPORTED_PROCESSING_ID,
            "MSH-11",
            "processing ID",
        ),
        (
            adt("A01", "D1").replace("|19610415|", "|19611345|"),
            ErrorCondition.DATA_TYPE_ERROR,
            "PID-7",
            "19611345",
        ),
        (
            adt("A01", "S1").replace("|19610415|M|", "|19610415|MALE|"),
            ErrorCondition.TABLE_VALUE_NOT_FOUND,
            "PID-8",
            "table 0001",
        ),
        (
            adt("A01", "P1").replace(
                "PID|1||12345^^^HOSP&1.2.840.99999.1&ISO^MR~987-65-4321^^^SSA^SS|", "PID|1|||"
            ),
            ErrorCondition.REQUIRED_FIELD_MISSING,
            "PID-3",
            "empty",
        ),
        (adt("A40", "G1", prior_mrn=""), ErrorCondition.REQUIRED_FIELD_MISSING, "MRG-1", "MRG-1"),
        (
            adt("A01", "O1").replace("ADT^A01^ADT_A01", "ORM^O01^ORM_O01"),
            ErrorCondition.UNSUPPORTED_MESSAGE_TYPE,
            "MSH-9.1",
            "ORM",
        ),
        (
            adt("A01", "E1").replace("ADT^A01^ADT_A01", "ADT^Z99"),
            ErrorCondition.UNSUPPORTED_EVENT_CODE,
            "MSH-9.2",
            "Z99",
        ),
        ("PID|1||12345\r", ErrorCondition.SEGMENT_SEQUENCE_ERROR, "", "MSH"),
    ],
)
def test_malformed_messages_name_the_problem(
    text: str, condition: ErrorCondition, location: str, reason: str
) -> None:
    found_condition, found_location, found_reason = problem_of(text)
    assert found_condition is condition
    assert found_location == location
    assert reason in found_reason


def test_local_z_segments_are_accepted() -> None:
    message = parse_adt(adt("A01", "Z1", extra_segments=("ZPI|local|data",)), VERSIONS)
    assert message.event == "A01"


def test_accepted_versions_are_configurable() -> None:
    condition, _, _ = problem_of(adt("A01", "C1", version="2.3"), ["2.5", "2.5.1"])
    assert condition is ErrorCondition.UNSUPPORTED_VERSION_ID
