"""Validation of FHIR resources against the R4 (4.0.1) specification, for tests and the test server.

No R4 validator installs here (the HL7 Java validator needs the network, ``fhir.resources`` 8
ships R4B and R5 only and does not enforce code bindings), so three checks are combined:

1. fhirclient's R4 models, strict: element names, cardinality, required elements, types.
2. ``fhir.resources`` R4B models: a second, independent structural check (R4B left
   DiagnosticReport, Observation, Device and Bundle as in R4).
3. The R4 value sets with *required* binding for the elements pacsflow emits, and the code
   systems it uses for extensible/preferred ones, copied from the R4 specification
   (hl7.org/fhir/R4), plus the R4 regular expressions for dateTime and instant.
"""

from __future__ import annotations

import re
from typing import Any

from fhirclient.models.fhirabstractbase import FHIRValidationError
from pydantic import ValidationError

# --- R4 value sets, required bindings (hl7.org/fhir/R4/valueset-*.html) -----------------------
DIAGNOSTIC_REPORT_STATUS = {
    "registered", "partial", "preliminary", "final", "amended", "corrected", "appended",
    "cancelled", "entered-in-error", "unknown",
}  # fmt: skip
OBSERVATION_STATUS = {
    "registered", "preliminary", "final", "amended", "corrected", "cancelled",
    "entered-in-error", "unknown",
}  # fmt: skip
BUNDLE_TYPE = {
    "document", "message", "transaction", "transaction-response", "batch", "batch-response",
    "history", "searchset", "collection",
}  # fmt: skip
HTTP_VERB = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"}
DEVICE_STATUS = {"active", "inactive", "entered-in-error", "unknown"}
DEVICE_NAME_TYPE = {
    "udi-label-name", "user-friendly-name", "patient-reported-name", "manufacturer-name",
    "model-name", "other",
}  # fmt: skip
IDENTIFIER_USE = {"usual", "official", "temp", "secondary", "old"}

# --- code systems of extensible / preferred bindings -----------------------------------------
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0074_CODES = {
    "AU", "BG", "BLB", "CG", "CUS", "CTH", "CT", "CH", "CP", "EC", "EN", "HM", "ICU", "IMM",
    "LAB", "MB", "MCB", "MYC", "NMS", "NMR", "NRS", "OUS", "OT", "OTH", "OSL", "PHR", "PHY",
    "PT", "RAD", "RX", "RUS", "RC", "RT", "SR", "SP", "TX", "VUS", "VR", "XRC",
}  # fmt: skip
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OBSERVATION_CATEGORY_CODES = {
    "social-history", "vital-signs", "imaging", "laboratory", "procedure", "survey", "exam",
    "therapy", "activity",
}  # fmt: skip
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
INTERPRETATION_CODES = {
    "_GeneticObservationInterpretation", "CAR", "Carrier", "_ObservationInterpretationChange",
    "B", "D", "U", "W", "_ObservationInterpretationExceptions", "<", ">", "AC", "IE", "QCF",
    "TOX", "_ObservationInterpretationNormality", "A", "AA", "HH", "LL", "H", "H>", "HU", "L",
    "L<", "LU", "N", "_ObservationInterpretationSusceptibility", "I", "MS", "NCL", "NS", "R",
    "SDD", "S", "VS", "EX", "HX", "LX", "HM", "ObservationInterpretationDetection", "IND",
    "E", "NEG", "ND", "POS", "DET", "EXP", "UNE", "NR", "RR", "WR",
}  # fmt: skip
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0203_CODES = {
    "DL", "PPN", "BRN", "MR", "MCN", "EN", "TAX", "NIIP", "PRN", "MD", "DR", "ACSN", "UDI",
    "SNO", "SB", "PLAC", "FILL", "JHN",
}  # fmt: skip
UCUM = "http://unitsofmeasure.org"
SNOMED_CT = "http://snomed.info/sct"
SNOMED_PRESENCE = {"52101004", "2667000"}

# --- R4 primitive types (hl7.org/fhir/R4/datatypes.html) -------------------------------------
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_TIME = r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?"
_ZONE = r"(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))"
DATE_TIME = re.compile(
    rf"^{_YEAR}(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T{_TIME}{_ZONE})?)?)?$"
)
INSTANT = re.compile(rf"^{_YEAR}-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T{_TIME}{_ZONE}$")
RESOURCE_TYPES = {
    "Patient",
    "ServiceRequest",
    "ImagingStudy",
    "Device",
    "Observation",
    "DiagnosticReport",
}


def _fhirclient_model(resource_type: str) -> Any:
    from fhirclient.models import bundle, device, diagnosticreport, observation

    return {
        "Bundle": bundle.Bundle,
        "Device": device.Device,
        "DiagnosticReport": diagnosticreport.DiagnosticReport,
        "Observation": observation.Observation,
    }.get(resource_type)


def _r4b_model(resource_type: str) -> Any:
    from fhir.resources.R4B import bundle, device, diagnosticreport, observation

    return {
        "Bundle": bundle.Bundle,
        "Device": device.Device,
        "DiagnosticReport": diagnosticreport.DiagnosticReport,
        "Observation": observation.Observation,
    }.get(resource_type)


def _codings(concept: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((concept or {}).get("coding") or [])


def _check_code(
    problems: list[str], where: str, concept: dict[str, Any] | None, system: str, allowed: set[str]
) -> None:
    matching = [coding for coding in _codings(concept) if coding.get("system") == system]
    if not matching:
        problems.append(f"{where}: no coding from {system}")
    for coding in matching:
        if coding.get("code") not in allowed:
            problems.append(f"{where}: code {coding.get('code')!r} is not in {system}")


def _check_references(problems: list[str], where: str, value: Any) -> None:
    if isinstance(value, dict):
        if "type" in value and "identifier" in value and value["type"] not in RESOURCE_TYPES:
            problems.append(f"{where}.type: {value['type']!r} is not a resource type")
        if "identifier" in value and isinstance(value["identifier"], dict):
            _check_identifier(problems, f"{where}.identifier", value["identifier"])
        for key, item in value.items():
            if key != "identifier":
                _check_references(problems, f"{where}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_references(problems, f"{where}[{index}]", item)


def _check_identifier(problems: list[str], where: str, identifier: dict[str, Any]) -> None:
    if not identifier.get("system") or not identifier.get("value"):
        problems.append(f"{where}: an identifier needs system and value")
    if identifier.get("use") and identifier["use"] not in IDENTIFIER_USE:
        problems.append(f"{where}.use: {identifier['use']!r} is not an R4 identifier-use")
    for coding in _codings(identifier.get("type")):
        if coding.get("system") == V2_0203 and coding.get("code") not in V2_0203_CODES:
            problems.append(f"{where}.type: {coding.get('code')!r} is not in v2-0203")


def _check_quantity(problems: list[str], where: str, quantity: dict[str, Any]) -> None:
    if not isinstance(quantity.get("value"), int | float):
        problems.append(f"{where}.value must be a number")
    if quantity.get("code") and quantity.get("system") != UCUM:
        problems.append(f"{where}: coded units must use UCUM ({UCUM})")


def _check_codes(resource: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    kind = resource.get("resourceType")
    for name in ("effectiveDateTime",):
        if name in resource and not DATE_TIME.match(str(resource[name])):
            problems.append(f"{kind}.{name} {resource[name]!r} is not an R4 dateTime")
    if "issued" in resource and not INSTANT.match(str(resource["issued"])):
        problems.append(f"{kind}.issued {resource['issued']!r} is not an R4 instant")
    for index, identifier in enumerate(resource.get("identifier") or []):
        _check_identifier(problems, f"{kind}.identifier[{index}]", identifier)
    _check_references(
        problems, kind or "resource", {k: v for k, v in resource.items() if k != "identifier"}
    )
    if kind == "DiagnosticReport":
        if resource.get("status") not in DIAGNOSTIC_REPORT_STATUS:
            problems.append(f"DiagnosticReport.status {resource.get('status')!r} is not R4")
        for index, category in enumerate(resource.get("category") or []):
            _check_code(
                problems, f"DiagnosticReport.category[{index}]", category, V2_0074, V2_0074_CODES
            )
    elif kind == "Observation":
        if resource.get("status") not in OBSERVATION_STATUS:
            problems.append(f"Observation.status {resource.get('status')!r} is not R4")
        for index, category in enumerate(resource.get("category") or []):
            _check_code(
                problems,
                f"Observation.category[{index}]",
                category,
                OBSERVATION_CATEGORY,
                OBSERVATION_CATEGORY_CODES,
            )
        for index, interpretation in enumerate(resource.get("interpretation") or []):
            _check_code(
                problems,
                f"Observation.interpretation[{index}]",
                interpretation,
                INTERPRETATION,
                INTERPRETATION_CODES,
            )
        value = resource.get("valueCodeableConcept")
        if value is not None:
            for coding in _codings(value):
                if coding.get("system") == SNOMED_CT and coding.get("code") not in SNOMED_PRESENCE:
                    problems.append(
                        f"Observation.valueCodeableConcept: unexpected {coding.get('code')!r}"
                    )
        if "valueQuantity" in resource:
            _check_quantity(problems, "Observation.valueQuantity", resource["valueQuantity"])
        for index, component in enumerate(resource.get("component") or []):
            if "valueQuantity" in component:
                _check_quantity(
                    problems,
                    f"Observation.component[{index}].valueQuantity",
                    component["valueQuantity"],
                )
    elif kind == "Device":
        if resource.get("status", "active") not in DEVICE_STATUS:
            problems.append(f"Device.status {resource.get('status')!r} is not R4")
        for index, name in enumerate(resource.get("deviceName") or []):
            if name.get("type") not in DEVICE_NAME_TYPE:
                problems.append(f"Device.deviceName[{index}].type {name.get('type')!r} is not R4")
    elif kind == "Bundle":
        if resource.get("type") not in BUNDLE_TYPE:
            problems.append(f"Bundle.type {resource.get('type')!r} is not R4")
        for index, entry in enumerate(resource.get("entry") or []):
            request = entry.get("request")
            if request and request.get("method") not in HTTP_VERB:
                problems.append(f"Bundle.entry[{index}].request.method {request.get('method')!r}")
            if "resource" in entry:
                problems.extend(
                    f"Bundle.entry[{index}]: {problem}"
                    for problem in _check_codes(entry["resource"])
                )
    return problems


def validate_r4(resource: dict[str, Any]) -> list[str]:
    """Every way ``resource`` (JSON) departs from R4; an empty list means valid."""
    kind = resource.get("resourceType", "")
    problems: list[str] = []
    model = _fhirclient_model(kind)
    if model is None:
        return [f"resourceType {kind!r} is not one this validator knows"]
    try:
        model(resource, strict=True)
    except FHIRValidationError as error:
        problems.append(f"fhirclient R4: {error}".replace("\n", " "))
    try:
        _r4b_model(kind).model_validate(resource)
    except ValidationError as error:
        problems.append(f"fhir.resources R4B: {error}".replace("\n", " "))
    problems.extend(_check_codes(resource))
    return problems
