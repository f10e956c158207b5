"""Realistic inputs for the EMR tests: ADT messages, analysis results, result documents."""

from __future__ import annotations

from datetime import UTC, datetime

from integrations.emr.document import OrderInfo, ResultDocument, StudyFacts
from integrations.hl7.model import Segment, parse
from models.results import (
    AnalysisResult,
    CodedConcept,
    Finding,
    Measurement,
    ModelIdentity,
    UrgencyTier,
)

MODEL = ModelIdentity(
    name="pacsflow-chest-xray",
    version="1.2.0",
    manufacturer="pacsflow",
    weights_sha256="ab" * 32,
    clinical_use=True,  # a clinical package: the NOT FOR CLINICAL USE tests flip it
)


def finding(
    label: str,
    code: str,
    meaning: str,
    probability: float,
    tier: UrgencyTier,
    threshold: float = 0.5,
    scheme: str = "SCT",
    measurements: tuple[Measurement, ...] = (),
) -> Finding:
    return Finding(
        label=label,
        code=CodedConcept(code, scheme, meaning),
        probability=probability,
        threshold=threshold,
        present=probability >= threshold,
        tier=tier,
        measurements=measurements,
    )


def chest_result(*, critical: bool = True, analyzer: str = "chest-xray") -> AnalysisResult:
    """A chest X-ray result: pneumothorax (Critical when present), effusion with a size, two absent."""
    return AnalysisResult(
        analyzer=analyzer,
        model=MODEL,
        status="analysed",
        findings=(
            finding(
                "Pneumothorax",
                "36118008",
                "Pneumothorax",
                0.91 if critical else 0.12,
                UrgencyTier.CRITICAL,
            ),
            finding(
                "Effusion",
                "60046008",
                "Pleural effusion",
                0.73,
                UrgencyTier.URGENT,
                measurements=(
                    Measurement(
                        CodedConcept("121206", "DCM", "Distance"),
                        41.5,
                        CodedConcept("mm", "UCUM", "millimeter"),
                    ),
                ),
            ),
            finding("Cardiomegaly", "8186001", "Cardiomegaly", 0.08, UrgencyTier.ROUTINE),
            finding("Nodule", "RID3875", "Nodule", 0.31, UrgencyTier.URGENT, scheme="RADLEX"),
        ),
        inference_seconds=0.4,
    )


def study_facts(
    study_instance_uid: str = "1.2.826.0.1.3680043.8.498.1001",
    patient_id: str = "0012345",
    issuer: str = "HOSP",
    patient_name: str = "MÜLLER^JÜRGEN^^DR",
) -> StudyFacts:
    return StudyFacts(
        study_instance_uid=study_instance_uid,
        patient_id=patient_id,
        issuer_of_patient_id=issuer,
        patient_name=patient_name,
        patient_birth_date="19610415",
        patient_sex="M",
        study_date="20260301",
        study_time="101500.123",
        study_description="XR CHEST PA AND LATERAL",
        modalities=("DX",),
    )


def order_info(accession: str = "ACC-2026-0001") -> OrderInfo:
    return OrderInfo(
        accession_number=accession,
        issuer_of_accession_number="RIS",
        placer_order_number="PLC-778899",
        filler_order_number="",
        requested_procedure_id="RP-1",
        requested_procedure_description="XR Chest 2 views",
        procedure_code=CodedConcept("36643-5", "LN", "XR Chest 2 Views"),
        requesting_physician="WHO^ANNA^^DR",
        referring_physician="HOUSE^GREGORY",
    )


def result_document(
    *, generation: int = 1, critical: bool = True, study: StudyFacts | None = None
) -> ResultDocument:
    return ResultDocument(
        study=study or study_facts(),
        order=order_info(),
        generation=generation,
        analysis=chest_result(critical=critical),
        created_at=datetime(2026, 3, 1, 10, 20, tzinfo=UTC),
    )


def segments_of(er7: str) -> list[Segment]:
    """The segments of a message as hl7apy parses it, read through pacsflow's adapter."""
    return list(parse(er7).segments)


def adt(
    event: str,
    control_id: str,
    *,
    mrn: str = "12345",
    authority: str = "HOSP",
    ward: str = "WARD-A",
    room: str = "101",
    bed: str = "1",
    version: str = "2.5.1",
    name: str = "MÜLLER^JÜRGEN",
    charset: str = "UNICODE UTF-8",
    structure: str | None = None,
    extra_segments: tuple[str, ...] = (),
    prior_mrn: str = "",
    patient_class: str = "I",
    when: str = "20260301090000",
) -> str:
    """An ADT message as a hospital ADT system writes it (CR-terminated segments)."""
    structures = {
        "A04": "ADT_A01",
        "A08": "ADT_A01",
        "A13": "ADT_A01",
        "A11": "ADT_A09",
        "A40": "ADT_A39",
    }
    msg_structure = structure if structure is not None else structures.get(event, f"ADT_{event}")
    message_type = f"ADT^{event}^{msg_structure}" if msg_structure else f"ADT^{event}"
    name_parts = name.split("^") + [""] * 6
    legal_name = "^".join([*name_parts[:6], "L"])  # XPN-7 name type: legal
    segments = [
        f"MSH|^~\\&|ADTSYS|HOSP|PACSFLOW|PACSFLOW|{when}||{message_type}|{control_id}|P|{version}|||||| {charset}".replace(
            "| ", "|"
        ),
        f"EVN|{event}|{when}",
        f"PID|1||{mrn}^^^{authority}&1.2.840.99999.1&ISO^MR~987-65-4321^^^SSA^SS||{legal_name}||19610415|M|||Hauptstr. 1^^Berlin^^10115^DE",
    ]
    if event == "A40":
        segments.append(f"MRG|{prior_mrn}^^^{authority}^MR")
    else:
        pv1 = {
            1: "1",
            2: patient_class,
            3: f"{ward}^{room}^{bed}^HOSP" if ward else "",
            7: "1234^CUDDY^LISA^^^DR",
            8: "5678^HOUSE^GREGORY^^^DR",
            17: "9012^WILSON^JAMES",
            19: f"V-{mrn}^^^HOSP^VN",
            44: when if event in ("A01", "A04") else "",
            45: when if event == "A03" else "",
        }
        segments.append("|".join(["PV1", *(pv1.get(n, "") for n in range(1, 46))]).rstrip("|"))
    segments.extend(extra_segments)
    return "\r".join(segments) + "\r"
