"""HL7 v2.5.1 ORU^R01 for an AI result (pure).

One message per analysed study and analyzer::

    MSH  pacsflow -> EMR, MSH-10 fixed per result (every resend carries the same ID), UTF-8
    PID  from the ADT patient context (MRN, name, birth date, sex), or from the DICOM header
    PV1  patient class, current ward/room/bed, prior ward, attending/referring physician, visit
    ORC  RE, placer/filler order numbers, ordering provider
    OBR  same numbers, procedure, accession number (OBR-18), result status (OBR-25) F for
         a final AI result, C when it corrects an earlier final one (the same study and
         analyzer with changed inputs), P for a preliminary one; diagnostic service section RAD
    NTE  NOT FOR CLINICAL USE first, when the model is not for clinical use
    NTE  model name and version, and the not-for-primary-diagnosis statement
    NTE  "no clinical context" when no ADT had arrived for the patient
    OBX  urgency tier (CWE, abnormal flag AA/A/N)
    OBX  one per finding: OBX-3 the finding's code, OBX-5 Present/Absent (SNOMED CT), OBX-8
         abnormal flag (AA critical, A present, N absent), OBX-9 the model's probability;
         measurements follow as NM observations with the same sub-ID (OBX-4)

Built with hl7apy's element API through :mod:`integrations.hl7.model` (which escapes every
value); the tests parse every message built with hl7apy's strict v2.5.1 validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hl7apy.core import Message

from integrations.emr.context import (
    Location,
    PatientContext,
    PatientIdentifier,
    PersonName,
    Provider,
)
from integrations.emr.document import ResultDocument
from integrations.hl7.header import format_dtm
from integrations.hl7.model import (
    SEGMENT_TERMINATOR,
    Component,
    field_text,
    set_field,
    set_fields,
    to_er7,
)
from models.results import CodedConcept, Finding, UrgencyTier

ORU_VERSION = "2.5.1"  # the default; [emr] hl7_version
ORU_CHARSET = "UNICODE UTF-8"
LOCAL_CODING_SYSTEM = "99PACSFLOW"
NOT_FOR_PRIMARY_DIAGNOSIS = (
    "AI-generated result, not verified by a radiologist; not for primary diagnosis."
)
NO_CLINICAL_CONTEXT = (
    "No clinical context: no ADT message had been received for this patient; patient"
    " identification is from the DICOM header."
)
# SNOMED CT qualifier values for the presence of a finding.
PRESENT = CodedConcept("52101004", "SCT", "Present")
ABSENT = CodedConcept("2667000", "SCT", "Absent")
TIER_CONCEPT = CodedConcept("AI-TIER", LOCAL_CODING_SYSTEM, "AI urgency tier")
STATUS_CONCEPT = CodedConcept("AI-STATUS", LOCAL_CODING_SYSTEM, "AI analysis status")
DEFAULT_SERVICE = CodedConcept("18748-4", "LN", "Diagnostic imaging study")
# HL7 tables 0123 (OBR-25) and 0085 (OBX-11): P preliminary, F final, C a correction that
# replaces a final result.
RESULT_STATUS_PRELIMINARY = "P"
RESULT_STATUS_FINAL = "F"
RESULT_STATUS_CORRECTED = "C"
DIAGNOSTIC_SECTION_RADIOLOGY = "RAD"  # HL7 table 0074


class AbnormalFlag:
    """HL7 table 0078 values pacsflow emits."""

    CRITICAL = "AA"  # very abnormal (non-numeric results, like a panic value)
    ABNORMAL = "A"
    NORMAL = "N"


@dataclass(frozen=True)
class MessageRoute:
    """MSH-3 to MSH-6 and MSH-11: who sends, who receives, production or test."""

    sending_application: str = "PACSFLOW"
    sending_facility: str = "PACSFLOW"
    receiving_application: str = "EMR"
    receiving_facility: str = "HOSPITAL"
    processing_id: str = "P"


def message_control_id(document: ResultDocument) -> str:
    """MSH-10: fixed per study, generation, analyzer and model version (at most 20 digits)."""
    return document.report_uid.removeprefix("2.25.")[-20:]


def result_status(document: ResultDocument) -> str:
    """OBR-25 and every OBX-11 of the message."""
    if not document.final:
        return RESULT_STATUS_PRELIMINARY
    return RESULT_STATUS_CORRECTED if document.corrects_final else RESULT_STATUS_FINAL


def _e(text: str) -> str:
    return field_text(text)


def _cwe(concept: CodedConcept) -> str:
    return field_text(concept.value, concept.meaning, concept.scheme)


def _cx(identifier: PatientIdentifier, default_type: str = "") -> str:
    authority: Component = (
        identifier.assigning_authority,
        identifier.authority_universal_id,
        identifier.authority_universal_id_type,
    )
    return field_text(
        identifier.id_number, "", "", authority, identifier.identifier_type_code or default_type
    )


def patient_identifier(patient_id: str, issuer_of_patient_id: str = "") -> str:
    """PID-3 of the alert and worklist messages: the patient ID, with its issuer as
    assigning authority and type MR when there is one."""
    issuer_type = "MR" if issuer_of_patient_id else ""
    return _cx(
        PatientIdentifier(patient_id, issuer_of_patient_id, identifier_type_code=issuer_type)
    )


def _xpn(name: PersonName) -> str:
    return field_text(name.family, name.given, name.middle, name.suffix, name.prefix)


def person_name(dicom_name: str) -> str:
    """A DICOM PN (family^given^middle^prefix^suffix) as an encoded HL7 XPN field
    (family^given^middle^suffix^prefix), delimiters escaped."""
    return _xpn(PersonName.from_dicom(dicom_name))


def _xcn(provider: Provider) -> str:
    if provider.is_empty:
        return ""
    return field_text(
        provider.id_number,
        provider.family,
        provider.given,
        provider.middle,
        provider.suffix,
        provider.prefix,
        "",
        "",
        provider.assigning_authority,
    )


def _pl(location: Location) -> str:
    if location.is_empty:
        return ""
    return field_text(
        location.point_of_care,
        location.room,
        location.bed,
        location.facility,
        "",
        "",
        "",
        "",
        location.description,
    )


def _ei(entity: str, namespace: str = "") -> str:
    return field_text(entity, namespace) if entity else ""


def _number(value: float) -> str:
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _study_datetime(document: ResultDocument) -> str:
    date = document.study.study_date.strip()
    if len(date) != 8 or not date.isdigit():
        return ""
    time = "".join(ch for ch in document.study.study_time.split(".")[0] if ch.isdigit())[:6]
    return date + time


def _ordering_provider(document: ResultDocument, patient: PatientContext | None) -> Provider:
    for dicom_name in (document.order.requesting_physician, document.order.referring_physician):
        if dicom_name.strip():
            return Provider.from_dicom(dicom_name)
    return patient.referring_doctor if patient else Provider()


def _pid(pid: Any, document: ResultDocument, patient: PatientContext | None) -> None:
    if patient is not None:
        identifiers = [_cx(patient.identifier, "MR")] + [
            _cx(item) for item in patient.other_identifiers
        ]
        set_field(pid, 1, "1")
        set_field(pid, 3, *identifiers)
        set_fields(pid, {5: _xpn(patient.name) or "UNKNOWN", 7: _e(patient.birth_date)})
        set_field(pid, 8, _e(patient.sex))
        return
    study = document.study
    mrn = PatientIdentifier(study.patient_id, study.issuer_of_patient_id, identifier_type_code="MR")
    sex = study.patient_sex.strip().upper()
    set_fields(
        pid,
        {
            1: _e("1"),
            3: _cx(mrn),
            5: _xpn(PersonName.from_dicom(study.patient_name)) or "UNKNOWN",
            7: _e(study.patient_birth_date.strip()),
            8: _e(sex if sex in ("M", "F", "O") else "U"),
        },
    )


def _pv1(pv1: Any, document: ResultDocument, patient: PatientContext | None) -> None:
    if patient is None:
        referring = Provider.from_dicom(document.order.referring_physician)
        set_fields(pv1, {1: _e("1"), 2: _e("U"), 8: _xcn(referring)})
        return
    set_fields(
        pv1,
        {
            1: _e("1"),
            2: _e(patient.patient_class or "U"),
            3: _pl(patient.location),
            6: _pl(patient.prior_location),
            7: _xcn(patient.attending_doctor),
            8: _xcn(patient.referring_doctor),
            17: _xcn(patient.admitting_doctor),
            19: _cx(patient.visit_number) if patient.visit_number else "",
            44: _e(patient.admitted_at),
            45: _e(patient.discharged_at),
        },
    )


def _presence_flag(finding: Finding) -> str:
    if not finding.present:
        return AbnormalFlag.NORMAL
    return AbnormalFlag.CRITICAL if finding.tier is UrgencyTier.CRITICAL else AbnormalFlag.ABNORMAL


def _tier_flag(tier: UrgencyTier) -> str:
    return {
        UrgencyTier.CRITICAL: AbnormalFlag.CRITICAL,
        UrgencyTier.URGENT: AbnormalFlag.ABNORMAL,
        UrgencyTier.ROUTINE: AbnormalFlag.NORMAL,
    }[tier]


def _observations(document: ResultDocument, observed_at: str) -> list[dict[int, str]]:
    analysis = document.analysis
    rows: list[dict[int, str]] = []
    tier = analysis.tier
    rows.append(
        {
            2: _e("CWE"),
            3: _cwe(TIER_CONCEPT),
            5: _cwe(CodedConcept(tier.value, LOCAL_CODING_SYSTEM, tier.value)),
            8: _e(_tier_flag(tier)),
        }
    )
    if analysis.status == "not_analysable":
        rows.append(
            {
                2: _e("ST"),
                3: _cwe(STATUS_CONCEPT),
                5: _e(f"not analysable: {analysis.reason or 'no reason given'}"),
            }
        )
    absent = [finding for finding in analysis.findings if not finding.present]
    for sub_id, finding in enumerate([*analysis.positive_findings, *absent], start=1):
        rows.append(
            {
                2: _e("CWE"),
                3: _cwe(finding.code),
                4: _e(str(sub_id)),
                5: _cwe(PRESENT if finding.present else ABSENT),
                8: _e(_presence_flag(finding)),
                9: _e(_number(finding.probability)),
            }
        )
        for measurement in finding.measurements:
            rows.append(
                {
                    2: _e("NM"),
                    3: _cwe(measurement.name),
                    4: _e(str(sub_id)),
                    5: _e(_number(measurement.value)),
                    6: _cwe(measurement.unit),
                }
            )
    for set_id, row in enumerate(rows, start=1):
        row[1] = _e(str(set_id))
        row[11] = _e(result_status(document))
        if observed_at:
            row[14] = _e(observed_at)
    return rows


def build_oru(
    document: ResultDocument,
    patient: PatientContext | None,
    route: MessageRoute,
    now: datetime,
    version: str = ORU_VERSION,
) -> str:
    """The ORU^R01 as ER7 text, segments terminated by CR.

    ``patient`` is the ADT context of the study's patient, or None when none has arrived
    (the message then says so in an NTE and identifies the patient from DICOM).
    """
    timestamp = format_dtm(now)
    order = document.order
    message = Message("ORU_R01", version=version)
    set_fields(
        message.msh,
        {
            3: _e(route.sending_application),
            4: _e(route.sending_facility),
            5: _e(route.receiving_application),
            6: _e(route.receiving_facility),
            7: _e(timestamp),
            9: field_text("ORU", "R01", "ORU_R01"),
            10: _e(message_control_id(document)),
            11: _e(route.processing_id),
            12: _e(version),
            18: _e(ORU_CHARSET),
        },
    )
    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient_group = result.add_group("ORU_R01_PATIENT")
    _pid(patient_group.pid, document, patient)
    _pv1(patient_group.add_group("ORU_R01_VISIT").pv1, document, patient)
    filler = order.filler_order_number or order.accession_number
    filler_namespace = "" if order.filler_order_number else order.issuer_of_accession_number
    placer = _ei(order.placer_order_number)
    filler_ei = _ei(filler, filler_namespace)
    ordering = _xcn(_ordering_provider(document, patient))
    observation = result.add_group("ORU_R01_ORDER_OBSERVATION")
    set_fields(
        observation.orc, {1: _e("RE"), 2: placer, 3: filler_ei, 9: _e(timestamp), 12: ordering}
    )
    if order.procedure_code is not None:
        service = _cwe(order.procedure_code)
    else:
        description = order.requested_procedure_description or document.study.study_description
        service = (
            field_text(DEFAULT_SERVICE.value, description, DEFAULT_SERVICE.scheme)
            if description
            else _cwe(DEFAULT_SERVICE)
        )
    observed_at = _study_datetime(document)
    set_fields(
        observation.obr,
        {
            1: _e("1"),
            2: placer,
            3: filler_ei,
            4: service,
            7: _e(observed_at),
            16: ordering,
            18: _e(order.accession_number),
            19: _e(order.requested_procedure_id),
            22: _e(timestamp),
            24: _e(DIAGNOSTIC_SECTION_RADIOLOGY),
            25: _e(result_status(document)),
        },
    )
    model = document.analysis.model
    notes = [f"{model.name} version {model.version}. {NOT_FOR_PRIMARY_DIAGNOSIS}"]
    if document.analysis.clinical_use_notice:  # the first note a reader of the result sees
        notes.insert(0, document.analysis.clinical_use_notice)
    if patient is None:
        notes.append(NO_CLINICAL_CONTEXT)
    for index, text in enumerate(notes, start=1):
        set_fields(observation.add_segment("NTE"), {1: _e(str(index)), 2: _e("L"), 3: _e(text)})
    for row in _observations(document, observed_at):
        set_fields(observation.add_group("ORU_R01_OBSERVATION").obx, row)
    return to_er7(message) + SEGMENT_TERMINATOR
