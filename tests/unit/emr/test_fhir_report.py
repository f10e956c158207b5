"""The FHIR bundle: valid R4 (fhirclient R4 + fhir.resources R4B + R4 value sets), and complete."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from fhirclient.models.bundle import Bundle

from integrations.emr.identifiers import MrnRules
from integrations.fhir.diagnostic_report import IdentifierSystems, build_report_bundle
from integrations.hl7.adt import parse_adt
from integrations.hl7.adt_events import updated_context
from tests.emr_samples import adt, result_document
from tests.fhir_r4 import validate_r4

NOW = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
SYSTEMS = IdentifierSystems(mrn={"HOSP": "http://hospital.example.org/fhir/mrn"})


def bundle(with_context: bool = False, critical: bool = True) -> dict[str, Any]:
    patient = None
    if with_context:
        rules = MrnRules()
        message = parse_adt(adt("A01", "1", ward="ICU"), ["2.5.1"])
        mrn = rules.select_mrn(message.identifiers)
        assert mrn is not None
        patient = updated_context(None, message, str(rules.hl7_key(mrn)), mrn)
    return build_report_bundle(
        result_document(critical=critical), patient, mrn_authority="HOSP", systems=SYSTEMS, now=NOW
    )


def resources(data: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [
        entry["resource"] for entry in data["entry"] if entry["resource"]["resourceType"] == kind
    ]


@pytest.mark.parametrize("with_context", [True, False])
def test_bundle_and_every_resource_are_valid_r4(with_context: bool) -> None:
    data = bundle(with_context)
    assert validate_r4(data) == []
    for entry in data["entry"]:
        assert validate_r4(entry["resource"]) == [], entry["resource"]["resourceType"]
    Bundle(data, strict=True)


def test_report_content() -> None:
    data = bundle(with_context=True)
    (report,) = resources(data, "DiagnosticReport")
    assert report["status"] == "final"
    assert report["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
        "code": "RAD",
        "display": "Radiology",
    }
    assert {
        "system": "http://loinc.org",
        "code": "18748-4",
        "display": "Diagnostic imaging study",
    } in report["code"]["coding"]
    assert report["subject"]["identifier"] == {
        "system": "http://hospital.example.org/fhir/mrn",
        "value": "12345",
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
        },
    }
    assert report["basedOn"][0]["identifier"]["value"] == "PLC-778899"
    assert report["basedOn"][0]["identifier"]["type"]["coding"][0]["code"] == "PLAC"
    assert report["imagingStudy"][0]["identifier"] == {
        "system": "urn:dicom:uid",
        "value": "urn:oid:1.2.826.0.1.3680043.8.498.1001",
    }
    assert "Pneumothorax (probability 0.91)" in report["conclusion"]
    assert "not for primary diagnosis" in report["conclusion"]
    assert "No clinical context" not in report["conclusion"]
    assert [code["coding"][0]["code"] for code in report["conclusionCode"]] == [
        "36118008",
        "60046008",
    ]
    full_urls = {entry["fullUrl"] for entry in data["entry"]}
    assert {ref["reference"] for ref in report["result"]} <= full_urls
    assert len(report["result"]) == 5  # tier + four findings


def test_one_observation_per_finding_with_value_interpretation_and_device() -> None:
    data = bundle()
    observations = resources(data, "Observation")
    (device,) = resources(data, "Device")
    assert device["deviceName"] == [{"name": "pacsflow-chest-xray", "type": "model-name"}]
    assert device["version"] == [{"value": "1.2.0"}]
    device_url = next(
        e["fullUrl"] for e in data["entry"] if e["resource"]["resourceType"] == "Device"
    )
    summary = []
    for item in observations:
        assert item["status"] == "final"
        assert item["category"][0]["coding"][0]["code"] == "imaging"
        assert item["device"]["reference"] == device_url
        components = {
            c["code"]["coding"][0]["code"]: c["valueQuantity"] for c in item.get("component", [])
        }
        summary.append(
            (
                item["code"]["coding"][0]["code"],
                item["valueCodeableConcept"]["coding"][0]["code"],
                item["interpretation"][0]["coding"][0]["code"],
                components.get("AI-PROBABILITY", {}).get("value"),
            )
        )
    assert summary == [
        ("AI-TIER", "Critical", "AA", None),
        ("36118008", "52101004", "AA", 0.91),
        ("60046008", "52101004", "A", 0.73),
        ("8186001", "2667000", "N", 0.08),
        ("RID3875", "2667000", "N", 0.31),
    ]
    effusion = observations[2]
    size = next(c for c in effusion["component"] if c["code"]["coding"][0]["code"] == "121206")
    assert size["valueQuantity"] == {
        "value": 41.5,
        "unit": "millimeter",
        "system": "http://unitsofmeasure.org",
        "code": "mm",
    }


def test_every_entry_is_a_conditional_create_on_a_stable_identifier() -> None:
    first, second = bundle(), bundle()
    for one, two in zip(first["entry"], second["entry"], strict=True):
        assert one["request"]["method"] == "POST"
        identifier = one["resource"]["identifier"][0]
        assert (
            one["request"]["ifNoneExist"]
            == f"identifier={identifier['system']}|{identifier['value']}"
        )
        assert one["fullUrl"] == two["fullUrl"]
        assert one["resource"]["identifier"] == two["resource"]["identifier"]


def test_without_context_the_report_says_so() -> None:
    (report,) = resources(bundle(with_context=False), "DiagnosticReport")
    assert "No clinical context" in report["conclusion"]
    assert report["subject"]["identifier"]["value"] == "0012345"


@pytest.mark.parametrize(
    "mutate, complaint",
    [
        (lambda r: r.__setitem__("status", "bogus-status"), "status 'bogus-status' is not R4"),
        (lambda r: r.pop("code"), "code"),
        (lambda r: r.__setitem__("imagingStudy", "not-a-list"), "imagingStudy"),
        (lambda r: r.__setitem__("unknownElement", 1), "unknownElement"),
        (
            lambda r: r["category"][0]["coding"][0].__setitem__("code", "XYZ"),
            "code 'XYZ' is not in",
        ),
        (lambda r: r.__setitem__("issued", "2026-03-01 10:00"), "not an R4 instant"),
        (lambda r: r.__setitem__("effectiveDateTime", "2026-03-01T10:00:00"), "not an R4 dateTime"),
        (
            lambda r: r["subject"]["identifier"]["type"]["coding"][0].__setitem__("code", "ZZ"),
            "not in v2-0203",
        ),
    ],
)
def test_the_r4_validator_catches_what_r4b_lets_through(mutate: Any, complaint: str) -> None:
    (report,) = resources(bundle(), "DiagnosticReport")
    broken = copy.deepcopy(report)
    mutate(broken)
    problems = validate_r4(broken)
    assert any(complaint in problem for problem in problems), problems


def test_the_validator_checks_observation_codes() -> None:
    observation = resources(bundle(), "Observation")[1]
    broken = copy.deepcopy(observation)
    broken["interpretation"][0]["coding"][0]["code"] = "VERY-BAD"
    broken["status"] = "done"
    problems = validate_r4(broken)
    assert any("'VERY-BAD'" in p for p in problems) and any("status 'done'" in p for p in problems)


def test_a_non_clinical_result_starts_its_conclusion_with_the_warning() -> None:
    from dataclasses import replace

    document = result_document()
    model = replace(document.analysis.model, clinical_use=False)
    document = replace(document, analysis=replace(document.analysis, model=model))
    data = build_report_bundle(document, None, mrn_authority="HOSP", systems=SYSTEMS, now=NOW)
    assert validate_r4(data) == []
    (report,) = resources(data, "DiagnosticReport")
    assert report["conclusion"].startswith("NOT FOR CLINICAL USE: pacsflow-chest-xray 1.2.0")
    (clinical,) = resources(bundle(), "DiagnosticReport")
    assert "NOT FOR CLINICAL USE" not in clinical["conclusion"]
