"""Result status downstream: final, its correction (ORU C, FHIR amended), and preliminary."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.parser import parse_message

from integrations.emr.document import ResultDocument
from integrations.fhir.diagnostic_report import IdentifierSystems, build_report_bundle
from integrations.hl7.oru import MessageRoute, build_oru, message_control_id
from tests.emr_samples import result_document, segments_of
from tests.fhir_r4 import validate_r4

NOW = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
ROUTE = MessageRoute("PACSFLOW", "RADIOLOGY", "EPIC", "HOSPITAL", "P")
SYSTEMS = IdentifierSystems(mrn={"HOSP": "http://hospital.example.org/fhir/mrn"})
FIRST_SR = "2.25.1001"
SECOND_SR = "2.25.1002"


def statuses(document: ResultDocument) -> tuple[str, set[str]]:
    text = build_oru(document, None, ROUTE, NOW)
    parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True).validate()
    found = {segment.name: [] for segment in segments_of(text)}
    for segment in segments_of(text):
        found[segment.name].append(segment)
    return found["OBR"][0].value(25), {obx.value(11) for obx in found["OBX"]}


def fhir_statuses(document: ResultDocument) -> set[str]:
    bundle = build_report_bundle(document, None, mrn_authority="HOSP", systems=SYSTEMS, now=NOW)
    validate_r4(bundle)
    return {
        entry["resource"]["status"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] in ("DiagnosticReport", "Observation")
    }


@pytest.fixture
def first() -> ResultDocument:
    return replace(result_document(), sr_instance_uid=FIRST_SR)


def test_a_first_result_is_final_and_its_correction_is_c_and_amended(first):
    assert statuses(first) == ("F", {"F"})
    assert fhir_statuses(first) == {"final"}
    correction = replace(first, sr_instance_uid=SECOND_SR, replaces=first.report_uid)
    assert correction.corrects_final
    assert statuses(correction) == ("C", {"C"})
    assert fhir_statuses(correction) == {"amended"}
    # another result, so another message: the outbox does not drop it as a resend
    assert message_control_id(correction) != message_control_id(first)


def test_a_preliminary_result_is_p_even_when_it_replaces_one(first):
    preliminary = replace(first, final=False, replaces=first.report_uid)
    assert statuses(preliminary) == ("P", {"P"})
    assert fhir_statuses(preliminary) == {"preliminary"}


def test_the_result_identity_survives_the_outbox(first):
    correction = replace(first, sr_instance_uid=SECOND_SR, replaces=first.report_uid)
    again = ResultDocument.from_json(correction.to_json())
    assert (again.sr_instance_uid, again.final, again.replaces) == (
        SECOND_SR,
        True,
        first.report_uid,
    )
    assert again.report_uid == correction.report_uid
    # a rerun that rebuilt the same SR is the same result
    assert replace(first, generation=2).report_uid == first.report_uid
