"""The ORU^R01 pacsflow sends: strictly valid v2.5.1 per hl7apy, and carrying what the EMR needs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from integrations.emr.context import PatientContext
from integrations.emr.identifiers import MrnRules
from integrations.hl7.adt import parse_adt
from integrations.hl7.adt_events import updated_context
from integrations.hl7.oru import (
    NO_CLINICAL_CONTEXT,
    NOT_FOR_PRIMARY_DIAGNOSIS,
    MessageRoute,
    build_oru,
    message_control_id,
)
from models.results import AnalysisResult
from tests.emr_samples import adt, result_document, segments_of, study_facts

NOW = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
ROUTE = MessageRoute("PACSFLOW", "RADIOLOGY", "EPIC", "HOSPITAL", "P")


def context(*events: tuple[str, str]) -> PatientContext:
    rules = MrnRules()
    current = None
    for index, (event, ward) in enumerate(events):
        message = parse_adt(adt(event, str(index), ward=ward), ["2.5.1"])
        mrn = rules.select_mrn(message.identifiers)
        assert mrn is not None
        current = updated_context(current, message, str(rules.hl7_key(mrn)), mrn)
    assert current is not None
    return current


def segments(text: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for segment in segments_of(text):
        found.setdefault(segment.name, []).append(segment)
    return found


@pytest.mark.parametrize("with_context", [True, False])
def test_message_is_strictly_valid_oru_r01_v251(with_context: bool) -> None:
    patient = context(("A01", "WARD-A")) if with_context else None
    text = build_oru(result_document(), patient, ROUTE, NOW)
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate()
    assert message.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    assert message.msh.msh_12.to_er7() == "2.5.1"


def test_patient_visit_and_order_come_from_context_and_order() -> None:
    patient = context(("A01", "WARD-A"), ("A02", "ICU"))
    found = segments(build_oru(result_document(), patient, ROUTE, NOW))
    msh, pid, pv1 = found["MSH"][0], found["PID"][0], found["PV1"][0]
    assert (msh.value(3), msh.value(4), msh.value(5), msh.value(6)) == (
        "PACSFLOW",
        "RADIOLOGY",
        "EPIC",
        "HOSPITAL",
    )
    assert msh.value(18) == "UNICODE UTF-8"
    assert pid.first(3).component(1) == "12345"  # the ADT MRN, not the DICOM "0012345"
    assert pid.first(3).component(4, 2) == "1.2.840.99999.1"
    assert pid.first(3).component(5) == "MR"
    assert pid.value(5, 1) == "MÜLLER" and pid.value(5, 2) == "JÜRGEN"
    assert pv1.value(2) == "I"
    assert pv1.first(3).component(1) == "ICU"
    assert pv1.first(6).component(1) == "WARD-A"
    assert pv1.first(7).component(2) == "CUDDY"
    assert pv1.first(19).component(1) == "V-12345"
    orc, obr = found["ORC"][0], found["OBR"][0]
    assert orc.value(1) == "RE"
    assert orc.value(2) == obr.value(2) == "PLC-778899"
    assert orc.first(3).component(1) == obr.first(3).component(1) == "ACC-2026-0001"
    assert obr.first(3).component(2) == "RIS"
    assert orc.first(12).component(2) == obr.first(16).component(2) == "WHO"  # Requesting Physician
    assert obr.first(4).component(1) == "36643-5" and obr.first(4).component(3) == "LN"
    assert obr.value(7) == "20260301101500"
    assert obr.value(18) == "ACC-2026-0001" and obr.value(19) == "RP-1"
    assert obr.value(24) == "RAD" and obr.value(25) == "F"
    notes = [note.value(3) for note in found["NTE"]]
    assert notes == [f"pacsflow-chest-xray version 1.2.0. {NOT_FOR_PRIMARY_DIAGNOSIS}"]


def test_one_coded_obx_per_finding_with_flag_and_probability() -> None:
    found = segments(build_oru(result_document(), None, ROUTE, NOW))
    rows = [
        (
            obx.value(2),
            obx.value(3),
            obx.value(4),
            obx.first(5).component(1),
            obx.value(8),
            obx.value(9),
            obx.value(11),
        )
        for obx in found["OBX"]
    ]
    assert rows == [
        ("CWE", "AI-TIER", "", "Critical", "AA", "", "F"),
        ("CWE", "36118008", "1", "52101004", "AA", "0.91", "F"),  # pneumothorax present, Critical
        ("CWE", "60046008", "2", "52101004", "A", "0.73", "F"),  # effusion present
        ("NM", "121206", "2", "41.5", "", "", "F"),  # its size, same sub-ID
        ("CWE", "8186001", "3", "2667000", "N", "0.08", "F"),  # absent
        ("CWE", "RID3875", "4", "2667000", "N", "0.31", "F"),
    ]
    assert [obx.value(1) for obx in found["OBX"]] == ["1", "2", "3", "4", "5", "6"]
    assert found["OBX"][1].first(3).component(3) == "SCT"
    assert found["OBX"][5].first(3).component(3) == "RADLEX"
    assert found["OBX"][3].first(6).component(1) == "mm"


def test_tier_follows_the_findings() -> None:
    routine = build_oru(result_document(critical=False), None, ROUTE, NOW)
    tier = segments(routine)["OBX"][0]
    assert tier.first(5).component(1) == "Urgent" and tier.value(8) == "A"


def test_without_context_the_message_says_so_and_uses_dicom() -> None:
    found = segments(build_oru(result_document(), None, ROUTE, NOW))
    pid, pv1 = found["PID"][0], found["PV1"][0]
    assert pid.first(3).component(1) == "0012345" and pid.first(3).component(4) == "HOSP"
    assert pid.value(5, 1) == "MÜLLER" and pid.value(5, 5) == "DR"  # DICOM prefix -> XPN-5
    assert pv1.value(2) == "U" and pv1.value(3) == ""
    assert NO_CLINICAL_CONTEXT in [note.value(3) for note in found["NTE"]]


def test_delimiters_in_names_and_reasons_are_escaped() -> None:
    study = study_facts(patient_name="O|BRIEN^MARY^ANN&JO")
    document = result_document(study=study)
    analysis = replace(
        document.analysis, status="not_analysable", reason="no PA view | lateral only", findings=()
    )
    document = replace(document, analysis=analysis)
    text = build_oru(document, None, ROUTE, NOW)
    found = segments(text)
    assert found["PID"][0].value(5, 1) == "O|BRIEN"
    assert found["PID"][0].value(5, 3) == "ANN&JO"
    status = found["OBX"][1]
    assert (
        status.value(2) == "ST" and status.value(5) == "not analysable: no PA view | lateral only"
    )
    parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()


def test_control_id_is_fixed_per_result_and_fits_msh10() -> None:
    first = message_control_id(result_document(generation=1))
    assert first == message_control_id(result_document(generation=1))
    assert first != message_control_id(result_document(generation=2))
    other_model = result_document()
    other_model = replace(
        other_model,
        analysis=AnalysisResult(
            **{
                **other_model.analysis.__dict__,
                "model": replace(other_model.analysis.model, version="1.3.0"),
            }
        ),
    )
    assert message_control_id(other_model) != first
    assert len(first) <= 20 and first.isdigit()
    assert segments(build_oru(result_document(), None, ROUTE, NOW))["MSH"][0].value(10) == first


def test_person_name_maps_dicom_pn_to_an_escaped_xpn() -> None:
    from integrations.hl7.oru import person_name

    assert person_name("DOE^JANE^Q^DR^JR") == "DOE^JANE^Q^JR^DR"
    assert person_name("O|BRIEN^MARY=オブライエン^メアリー") == "O\\F\\BRIEN^MARY"
    assert person_name("") == ""


def test_a_non_clinical_result_says_so_in_the_first_nte() -> None:
    document = result_document()
    document = replace(
        document,
        analysis=replace(
            document.analysis, model=replace(document.analysis.model, clinical_use=False)
        ),
    )
    text = build_oru(document, None, ROUTE, NOW)
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate()
    notes = [note.value(3) for note in segments(text)["NTE"]]
    assert notes[0].startswith("NOT FOR CLINICAL USE: pacsflow-chest-xray 1.2.0 is a demo")
    assert notes[1] == f"pacsflow-chest-xray version 1.2.0. {NOT_FOR_PRIMARY_DIAGNOSIS}"
    clinical = segments(build_oru(result_document(), None, ROUTE, NOW))
    assert all("NOT FOR CLINICAL USE" not in note.value(3) for note in clinical["NTE"])


@pytest.mark.parametrize("version", ["2.5", "2.5.1"])
def test_results_and_alerts_are_built_in_the_version_the_emr_is_configured_for(
    version: str,
) -> None:
    from integrations.escalation.notification import Notification
    from integrations.hl7.alert import build_alert

    text = build_oru(result_document(), context(("A01", "WARD-A")), ROUTE, NOW, version)
    message = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert message.validate() and message.msh.msh_12.to_er7() == version
    alert = Notification(
        idempotency_key="k" * 32, level=0, level_label="primary", round=0, team_id="t",
        team_name="Surgery", recipients=(), study_instance_uid="1.2.3", accession_number="A1",
        modality="CT", patient_id="P1", patient_location="ICU", finding="Pneumothorax",
        finding_code="SCT:36118008", probability=0.9, tier="Critical", rule="r", analyzer="a",
        study_link="", ack_link="https://x/ack", ack_token="t", study_closed_at=NOW, issued_at=NOW,
    )  # fmt: skip
    er7 = build_alert(alert, now=NOW, version=version)
    parsed = parse_message(er7, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
    assert parsed.validate() and parsed.msh.msh_12.to_er7() == version
