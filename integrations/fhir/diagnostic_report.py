"""FHIR R4 DiagnosticReport, Observations and Device for an AI result, as a transaction (pure).

Built with fhirclient's R4 models, as one ``transaction`` Bundle so that the report and its
observations land together or not at all::

    Device             the model (name, version, manufacturer)
    Observation  x N   urgency tier, then one per finding: code, Present/Absent
                       (valueCodeableConcept), interpretation AA/A/N, the model's probability
                       and any measurements as valueQuantity components, device
    DiagnosticReport   status final (amended when it replaces an earlier final), category RAD, LOINC 18748-4, subject by MRN
                       identifier, basedOn the order, imagingStudy by Study Instance UID,
                       conclusion and conclusionCode, result -> the observations

Every entry is a conditional create (``ifNoneExist`` on its identifier) with identifiers
derived from the result, so posting the same bundle twice creates nothing new: the outbox
may resend after a lost response without duplicating the report.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhirclient.models.bundle import Bundle, BundleEntry, BundleEntryRequest
from fhirclient.models.codeableconcept import CodeableConcept
from fhirclient.models.coding import Coding
from fhirclient.models.device import Device, DeviceDeviceName, DeviceVersion
from fhirclient.models.diagnosticreport import DiagnosticReport
from fhirclient.models.fhirdatetime import FHIRDateTime
from fhirclient.models.fhirinstant import FHIRInstant
from fhirclient.models.fhirreference import FHIRReference as Reference
from fhirclient.models.identifier import Identifier
from fhirclient.models.observation import Observation, ObservationComponent
from fhirclient.models.quantity import Quantity

from integrations.dicom.uids import derived_uid
from integrations.emr.context import PatientContext, PatientIdentifier, PersonName
from integrations.emr.document import ResultDocument
from models.results import CodedConcept, Finding, UrgencyTier

# Code systems (FHIR R4 / HL7 terminology canonical URIs).
SNOMED_CT = "http://snomed.info/sct"
LOINC = "http://loinc.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
RADLEX = "http://www.radlex.org"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"  # diagnostic service section
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier type
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
OBSERVATION_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
URI_IDENTIFIER = "urn:ietf:rfc:3986"
DICOM_UID_SYSTEM = "urn:dicom:uid"
LOCAL_SYSTEM_PREFIX = "urn:pacsflow:coding-scheme:"

_SCHEME_SYSTEMS = {
    "SCT": SNOMED_CT,
    "LN": LOINC,
    "DCM": DICOM_DCM,
    "UCUM": UCUM,
    "RADLEX": RADLEX,
}

# R4 diagnostic-report-status and observation-status: "final" for a final AI result,
# "amended" when it replaces an earlier final one for the same study and analyzer (changed
# inputs: "subsequent to being final, ... modified. This includes any change in the
# results"), "preliminary" for a preliminary one.
REPORT_STATUS_PRELIMINARY = "preliminary"
REPORT_STATUS_FINAL = "final"
REPORT_STATUS_AMENDED = "amended"


def report_status(document: ResultDocument) -> str:
    """DiagnosticReport.status and every Observation.status of the bundle."""
    if not document.final:
        return REPORT_STATUS_PRELIMINARY
    return REPORT_STATUS_AMENDED if document.corrects_final else REPORT_STATUS_FINAL


REPORT_CATEGORY = ("RAD", "Radiology")
REPORT_CODE = ("18748-4", "Diagnostic imaging study")
OBSERVATION_CATEGORY_IMAGING = ("imaging", "Imaging")
PRESENT = ("52101004", "Present")
ABSENT = ("2667000", "Absent")
INTERPRETATION = {
    "AA": "Critical abnormal",
    "A": "Abnormal",
    "N": "Normal",
}
LOCAL = "99PACSFLOW"
TIER_CODE = CodedConcept("AI-TIER", LOCAL, "AI urgency tier")
PROBABILITY_CODE = CodedConcept("AI-PROBABILITY", LOCAL, "AI model probability")
NOT_FOR_PRIMARY_DIAGNOSIS = (
    "AI-generated result, not verified by a radiologist; not for primary diagnosis."
)
NO_CLINICAL_CONTEXT = "No clinical context: the patient is identified from the DICOM header."


def code_system(scheme: str) -> str:
    """The FHIR system URI of a DICOM coding scheme designator (local schemes get a URN)."""
    return _SCHEME_SYSTEMS.get(scheme.upper(), LOCAL_SYSTEM_PREFIX + scheme)


@dataclass(frozen=True)
class IdentifierSystems:
    """Which FHIR Identifier.system an MRN of each (canonical) assigning authority uses."""

    mrn: Mapping[str, str] = field(default_factory=dict)
    placer_order: str = "urn:pacsflow:placer-order-number"
    accession: str = "urn:pacsflow:accession-number"

    def for_mrn(self, authority: str, identifier: PatientIdentifier | None = None) -> str:
        if authority in self.mrn:
            return self.mrn[authority]
        if identifier is not None and identifier.authority_universal_id_type.upper() == "ISO":
            return f"urn:oid:{identifier.authority_universal_id}"
        return f"urn:pacsflow:mrn-authority:{authority or 'unknown'}"


def _coding(system: str, code: str, display: str = "") -> Coding:
    coding = Coding()
    coding.system = system
    coding.code = code
    if display:
        coding.display = display
    return coding


def _concept(*codings: Coding, text: str = "") -> CodeableConcept:
    concept = CodeableConcept()
    concept.coding = list(codings)
    if text:
        concept.text = text
    return concept


def _coded(concept: CodedConcept) -> CodeableConcept:
    return _concept(
        _coding(code_system(concept.scheme), concept.value, concept.meaning), text=concept.meaning
    )


def _identifier(system: str, value: str, type_code: str = "") -> Identifier:
    identifier = Identifier()
    identifier.system = system
    identifier.value = value
    if type_code:
        identifier.type = _concept(_coding(V2_0203, type_code))
    return identifier


def _reference_by_identifier(
    resource_type: str, identifier: Identifier, display: str = ""
) -> Reference:
    reference = Reference()
    reference.type = resource_type
    reference.identifier = identifier
    if display:
        reference.display = display
    return reference


def _reference(url: str) -> Reference:
    reference = Reference()
    reference.reference = url
    return reference


def _quantity(value: float, unit: CodedConcept) -> Quantity:
    quantity = Quantity()
    quantity.value = round(float(value), 6)
    quantity.unit = unit.meaning or unit.value
    quantity.system = code_system(unit.scheme)
    quantity.code = unit.value
    return quantity


def _full_url(identifier_value: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, identifier_value)}"


def _entry(resource: Any, identifier: Identifier) -> BundleEntry:
    entry = BundleEntry()
    entry.fullUrl = _full_url(f"{identifier.system}|{identifier.value}")
    entry.resource = resource
    request = BundleEntryRequest()
    request.method = "POST"
    request.url = resource.resource_type
    request.ifNoneExist = f"identifier={identifier.system}|{identifier.value}"
    entry.request = request
    return entry


def _interpretation(code: str) -> CodeableConcept:
    return _concept(_coding(OBSERVATION_INTERPRETATION, code, INTERPRETATION[code]))


def _finding_interpretation(finding: Finding) -> str:
    if not finding.present:
        return "N"
    return "AA" if finding.tier is UrgencyTier.CRITICAL else "A"


def _tier_interpretation(tier: UrgencyTier) -> str:
    return {UrgencyTier.CRITICAL: "AA", UrgencyTier.URGENT: "A", UrgencyTier.ROUTINE: "N"}[tier]


def _patient_reference(
    document: ResultDocument,
    patient: PatientContext | None,
    systems: IdentifierSystems,
    authority: str,
) -> Reference:
    if patient is not None:
        identifier = patient.identifier
        name = patient.name
    else:
        identifier = PatientIdentifier(
            document.study.patient_id, document.study.issuer_of_patient_id
        )
        name = PersonName.from_dicom(document.study.patient_name)
    system = systems.for_mrn(authority, identifier)
    return _reference_by_identifier(
        "Patient", _identifier(system, identifier.id_number, "MR"), name.display
    )


def _effective(document: ResultDocument) -> FHIRDateTime | None:
    date = document.study.study_date.strip()
    if len(date) != 8 or not date.isdigit():
        return None
    return FHIRDateTime(f"{date[:4]}-{date[4:6]}-{date[6:]}")


def build_report_bundle(
    document: ResultDocument,
    patient: PatientContext | None,
    *,
    mrn_authority: str,
    systems: IdentifierSystems,
    now: datetime,
) -> dict[str, Any]:
    """The transaction Bundle (as JSON) for one result document.

    ``patient`` is the ADT context (None: identify the patient from DICOM and say so in the
    conclusion); ``mrn_authority`` is the canonical assigning authority of the patient's MRN.
    """
    analysis = document.analysis
    model = analysis.model
    report_uid = document.report_uid
    issued = FHIRInstant(now.isoformat(timespec="seconds"))
    effective = _effective(document)
    subject = _patient_reference(document, patient, systems, mrn_authority)
    study_reference = _reference_by_identifier(
        "ImagingStudy",
        _identifier(DICOM_UID_SYSTEM, f"urn:oid:{document.study.study_instance_uid}"),
    )

    device_identifier = _identifier(
        URI_IDENTIFIER, f"urn:oid:{derived_uid('device', model.algorithm_uid_seed)}"
    )
    device = Device()
    device.identifier = [device_identifier]
    device.status = "active"
    device_name = DeviceDeviceName()
    device_name.name = model.name
    device_name.type = "model-name"
    device.deviceName = [device_name]
    version = DeviceVersion()
    version.value = model.version
    device.version = [version]
    if model.manufacturer:
        device.manufacturer = model.manufacturer
    device_entry = _entry(device, device_identifier)

    def observation(
        suffix: str,
        code: CodeableConcept,
        value: CodeableConcept,
        interpretation: str,
        components: list[ObservationComponent],
    ) -> BundleEntry:
        item = Observation()
        identifier = _identifier(URI_IDENTIFIER, f"urn:oid:{derived_uid(report_uid, suffix)}")
        item.identifier = [identifier]
        item.status = report_status(document)
        item.category = [_concept(_coding(OBSERVATION_CATEGORY, *OBSERVATION_CATEGORY_IMAGING))]
        item.code = code
        item.subject = subject
        if effective is not None:
            item.effectiveDateTime = effective
        item.issued = issued
        item.valueCodeableConcept = value
        item.interpretation = [_interpretation(interpretation)]
        item.device = _reference(device_entry.fullUrl)
        item.derivedFrom = [study_reference]
        if components:
            item.component = components
        return _entry(item, identifier)

    tier = analysis.tier
    entries = [
        observation(
            "tier",
            _coded(TIER_CODE),
            _coded(CodedConcept(tier.value, LOCAL, tier.value)),
            _tier_interpretation(tier),
            [],
        )
    ]
    absent = [finding for finding in analysis.findings if not finding.present]
    for finding in [*analysis.positive_findings, *absent]:
        probability = ObservationComponent()
        probability.code = _coded(PROBABILITY_CODE)
        probability.valueQuantity = _quantity(
            finding.probability, CodedConcept("1", "UCUM", "probability")
        )
        components = [probability]
        for measurement in finding.measurements:
            component = ObservationComponent()
            component.code = _coded(measurement.name)
            component.valueQuantity = _quantity(measurement.value, measurement.unit)
            components.append(component)
        presence = PRESENT if finding.present else ABSENT
        entries.append(
            observation(
                f"finding|{finding.label}",
                _coded(finding.code),
                _concept(_coding(SNOMED_CT, *presence), text=presence[1]),
                _finding_interpretation(finding),
                components,
            )
        )

    report = DiagnosticReport()
    report_identifier = _identifier(URI_IDENTIFIER, f"urn:oid:{report_uid}")
    report.identifier = [report_identifier]
    report.status = report_status(document)
    report.category = [_concept(_coding(V2_0074, *REPORT_CATEGORY))]
    report_code = [_coding(LOINC, *REPORT_CODE)]
    order = document.order
    if order.procedure_code is not None:
        report_code.append(
            _coding(
                code_system(order.procedure_code.scheme),
                order.procedure_code.value,
                order.procedure_code.meaning,
            )
        )
    report.code = _concept(
        *report_code,
        text=order.requested_procedure_description
        or document.study.study_description
        or REPORT_CODE[1],
    )
    report.subject = subject
    if order.placer_order_number:
        order_identifier = _identifier(systems.placer_order, order.placer_order_number, "PLAC")
        report.basedOn = [_reference_by_identifier("ServiceRequest", order_identifier)]
    elif order.accession_number:
        order_identifier = _identifier(systems.accession, order.accession_number, "ACSN")
        report.basedOn = [_reference_by_identifier("ServiceRequest", order_identifier)]
    if effective is not None:
        report.effectiveDateTime = effective
    report.issued = issued
    report.imagingStudy = [study_reference]
    report.result = [_reference(entry.fullUrl) for entry in entries]
    report.conclusion = _conclusion(document, patient is None)
    positives = analysis.positive_findings
    if positives:
        report.conclusionCode = [_coded(finding.code) for finding in positives]

    bundle = Bundle()
    bundle.type = "transaction"
    bundle.entry = [device_entry, *entries, _entry(report, report_identifier)]
    return bundle.as_json()


def _conclusion(document: ResultDocument, without_context: bool) -> str:
    analysis = document.analysis
    model = analysis.model
    if analysis.status == "not_analysable":
        found = f"Not analysable: {analysis.reason or 'no reason given'}."
    elif analysis.positive_findings:
        found = (
            "Findings: "
            + "; ".join(
                f"{finding.code.meaning} (probability {finding.probability:.2f})"
                for finding in analysis.positive_findings
            )
            + "."
        )
    else:
        found = "No finding above its operating threshold."
    parts = [
        f"{model.name} version {model.version}.",
        found,
        f"Urgency: {analysis.tier.value}.",
        NOT_FOR_PRIMARY_DIAGNOSIS,
    ]
    if without_context:
        parts.append(NO_CLINICAL_CONTEXT)
    if analysis.clinical_use_notice:  # first, so no reader of the conclusion misses it
        parts.insert(0, analysis.clinical_use_notice)
    return " ".join(parts)
