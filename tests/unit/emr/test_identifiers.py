"""MRN matching with the formats hospitals really use."""

from __future__ import annotations

from integrations.emr.context import PatientIdentifier
from integrations.emr.identifiers import MrnRules

RULES = MrnRules(
    authority_map={"HOSP_PACS": "HOSP", "1.2.840.99999.1": "HOSP", "OLDLAB": "LAB"},
    strip_prefixes=("MRN-", "MRN"),
)


def test_leading_zeros_and_prefixes_do_not_prevent_a_match() -> None:
    hl7 = RULES.hl7_key(PatientIdentifier("12345", "HOSP", "1.2.840.99999.1", "ISO", "MR"))
    for dicom_id in ("0012345", "12345", "MRN-0012345", "mrn12345", " 12345 "):
        assert RULES.dicom_key(dicom_id, "HOSP_PACS") == hl7


def test_authority_is_matched_by_namespace_or_universal_id() -> None:
    by_oid = RULES.hl7_key(PatientIdentifier("12345", "", "1.2.840.99999.1", "ISO", "MR"))
    assert str(by_oid) == "HOSP|12345"
    assert RULES.dicom_key("12345", "hosp") == by_oid  # case-insensitive by default


def test_different_authorities_never_match() -> None:
    assert RULES.dicom_key("12345", "OTHER") != RULES.dicom_key("12345", "HOSP")


def test_alphanumeric_identifiers_keep_their_zeros() -> None:
    assert RULES.normalize_identifier("A00123") == "A00123"
    assert RULES.normalize_identifier("000") == "0"
    assert MrnRules(strip_leading_zeros=False).normalize_identifier("00123") == "00123"


def test_case_sensitive_rules() -> None:
    rules = MrnRules(case_sensitive=True)
    assert rules.dicom_key("abc", "HOSP") != rules.dicom_key("ABC", "HOSP")


def test_default_authority_applies_when_dicom_has_no_issuer() -> None:
    rules = MrnRules(default_authority="HOSP")
    assert str(rules.dicom_key("0042", "")) == "HOSP|42"
    assert str(MrnRules().dicom_key("0042", "")) == "|42"


def test_mrn_is_the_typed_repetition_or_the_only_untyped_one() -> None:
    ssn = PatientIdentifier("987-65-4321", "SSA", identifier_type_code="SS")
    mrn = PatientIdentifier("12345", "HOSP", identifier_type_code="MR")
    untyped = PatientIdentifier("777", "HOSP")
    assert RULES.select_mrn([ssn, mrn]) == mrn
    assert RULES.select_mrn([ssn, untyped]) == untyped
    assert RULES.select_mrn([ssn]) is None
    assert RULES.select_mrn([untyped, PatientIdentifier("888")]) is None
    assert MrnRules(identifier_types=("PI",)).select_mrn(
        [mrn, PatientIdentifier("5", "HOSP", identifier_type_code="PI")]
    ) == PatientIdentifier("5", "HOSP", identifier_type_code="PI")
