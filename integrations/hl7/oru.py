"""HL7 v2.5 ORU^R01 for an AI result, built with hl7apy (pure).

One message per analysed study and analyzer: PID from the study, OBR for the imaging order
(accession as filler order number, result status P: an AI result is unsigned), one OBX per
evaluated label that is present plus one for the urgency tier, NTE with the model identity
and the not-for-primary-diagnosis statement.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from hl7apy.core import Message

from integrations.dicom.uids import derived_uid
from models.results import AnalysisResult

NOT_FOR_PRIMARY_DIAGNOSIS = "AI-generated preliminary result; not for primary diagnosis."


@dataclass(frozen=True)
class OruContext:
    """Who and what the message is about (from the study, and later the ADT context)."""

    study_instance_uid: str
    generation: int
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_date: str
    sending_application: str = "PACSFLOW"
    sending_facility: str = "PACSFLOW"
    receiving_application: str = "EMR"
    receiving_facility: str = "HOSPITAL"


def message_control_id(context: OruContext, analysis: AnalysisResult) -> str:
    """MSH-10, fixed per study, generation, analyzer and model version: resends reuse it."""
    uid = derived_uid(
        "oru",
        context.study_instance_uid,
        context.generation,
        analysis.analyzer,
        analysis.model.version,
    )
    return uid.removeprefix("2.25.")[-20:]


def _escape(text: str) -> str:
    # HL7 escape sequences for the encoding characters (v2.5 2.7.4).
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )


def person_name(dicom_name: str) -> str:
    """DICOM PN (family^given^middle^prefix^suffix) as HL7 XPN (family^given^middle^suffix^prefix)."""
    alphabetic = dicom_name.split("=")[0]
    parts = [_escape(part) for part in alphabetic.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    return "^".join([family, given, middle, suffix, prefix]).rstrip("^")


def build_oru(context: OruContext, analysis: AnalysisResult, now: datetime) -> str:
    """The ORU^R01 message as ER7 text (segments separated by carriage returns)."""
    message = Message("ORU_R01", version="2.5")
    message.msh.msh_3 = context.sending_application
    message.msh.msh_4 = context.sending_facility
    message.msh.msh_5 = context.receiving_application
    message.msh.msh_6 = context.receiving_facility
    message.msh.msh_7 = now.strftime("%Y%m%d%H%M%S")
    message.msh.msh_9 = "ORU^R01^ORU_R01"
    message.msh.msh_10 = message_control_id(context, analysis)
    message.msh.msh_11 = "P"
    message.msh.msh_12 = "2.5"

    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    pid = patient.pid
    pid.pid_1 = "1"
    identifier = _escape(context.patient_id)
    if context.issuer_of_patient_id:
        identifier += f"^^^{_escape(context.issuer_of_patient_id)}^MR"
    pid.pid_3 = identifier
    pid.pid_5 = person_name(context.patient_name) or "UNKNOWN"
    if context.patient_birth_date:
        pid.pid_7 = context.patient_birth_date
    if context.patient_sex in {"M", "F", "O", "U"}:
        pid.pid_8 = context.patient_sex

    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    obr = order.obr
    obr.obr_1 = "1"
    obr.obr_3 = _escape(context.accession_number) or context.study_instance_uid[-22:]
    obr.obr_4 = f"AI^{_escape(analysis.model.name)}^L"
    if context.study_date:
        obr.obr_7 = context.study_date
    obr.obr_22 = now.strftime("%Y%m%d%H%M%S")
    obr.obr_25 = "P"

    observations: list[
        tuple[str, str, str, str]
    ] = []  # (value type, identifier, value, abnormal flag)
    observations.append(
        (
            "ST",
            "AI-TIER^AI urgency tier^L",
            analysis.tier.value,
            "A" if analysis.tier.rank < 2 else "N",
        )
    )
    if analysis.status == "not_analysable":
        observations.append(
            (
                "ST",
                "AI-STATUS^AI analysis status^L",
                _escape(f"not analysable: {analysis.reason}"),
                "",
            )
        )
    for finding in analysis.positive_findings:
        code = f"{finding.code.value}^{_escape(finding.code.meaning)}^{finding.code.scheme}"
        observations.append(("ST", code, f"present (probability {finding.probability:.2f})", "A"))
    for index, (value_type, identifier_text, value, flag) in enumerate(observations, start=1):
        group = order.add_group("ORU_R01_OBSERVATION")
        obx = group.obx
        obx.obx_1 = str(index)
        obx.obx_2 = value_type
        obx.obx_3 = identifier_text
        obx.obx_5 = value
        if flag:
            obx.obx_8 = flag
        obx.obx_11 = "P"
    note = order.add_segment("NTE")
    note.nte_1 = "1"
    note.nte_3 = _escape(
        f"{analysis.model.name} {analysis.model.version}. {NOT_FOR_PRIMARY_DIAGNOSIS}"
    )
    return message.to_er7()
