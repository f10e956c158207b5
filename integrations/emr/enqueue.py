"""Queue one analysis result for the EMR: an ORU document and, if enabled, a FHIR one (I/O).

Both rows are written in one transaction, keyed by the study's patient (the DICOM Patient ID
and Issuer reduced by the MRN rules, then followed through A40 merges), with a priority from
the urgency tier so that Critical results overtake routine ones of other patients.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from psycopg.types.json import Jsonb
from pydicom import dcmread
from pydicom.errors import InvalidDicomError

from integrations.db.connection import Database
from integrations.db.patients import OUTBOX_CHANNEL, PatientStore
from integrations.db.records import StudyRecord
from integrations.emr.document import DOCUMENT_KIND, OrderInfo, ResultDocument, StudyFacts
from integrations.emr.identifiers import MrnRules
from integrations.hl7.oru import message_control_id
from integrations.settings import Settings
from models.results import UrgencyTier

ORDER_TAGS = [
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "ReferringPhysicianName",
    "RequestingPhysician",
    "RequestedProcedureID",
    "RequestedProcedureDescription",
    "RequestedProcedureCodeSequence",
    "ProcedureCodeSequence",
    "PlacerOrderNumberImagingServiceRequest",
    "FillerOrderNumberImagingServiceRequest",
    "RequestAttributesSequence",
]


def priority_of(tier: UrgencyTier) -> int:
    """Critical 2, Urgent 1, Routine 0."""
    return 2 - tier.rank


def order_from_instance(path: str | Path | None, study: StudyRecord) -> OrderInfo:
    """The order details from one received image's header (fallback: the study row)."""
    fallback = OrderInfo(
        accession_number=study.accession_number,
        referring_physician=study.referring_physician_name,
    )
    if path is None:
        return fallback
    try:
        dataset = dcmread(path, stop_before_pixels=True, specific_tags=ORDER_TAGS, force=True)
    except (OSError, InvalidDicomError, ValueError):
        return fallback
    order = OrderInfo.from_dataset(dataset, accession_number=study.accession_number)
    if not order.referring_physician:
        order = OrderInfo(
            **{**order.__dict__, "referring_physician": study.referring_physician_name}
        )
    return order


def study_facts(study: StudyRecord) -> StudyFacts:
    return StudyFacts(
        study_instance_uid=study.study_instance_uid,
        patient_id=study.patient_id,
        issuer_of_patient_id=study.issuer_of_patient_id,
        patient_name=study.patient_name,
        patient_birth_date=study.patient_birth_date,
        patient_sex=study.patient_sex,
        study_date=study.study_date,
        study_time=study.study_time,
        study_description=study.study_description,
        modalities=tuple(study.modalities),
    )


@dataclass(frozen=True)
class Enqueued:
    message_control_id: str
    patient_key: str
    hl7_queued: bool
    fhir_queued: bool
    corrects: str = ""  # the report UID of the earlier final result this one corrects


def patient_key_for(
    database: Database, settings: Settings, patient_id: str, issuer_of_patient_id: str
) -> str:
    """The outbox ``patient_key`` of a study's patient: the DICOM Patient ID and Issuer reduced
    by the ``[mrn]`` rules, followed through A40 merges. Every stage that queues HL7 for a
    patient should use it, so that all of that patient's messages share one ordered queue."""
    rules = MrnRules.from_settings(settings.mrn)
    key = str(rules.dicom_key(patient_id, issuer_of_patient_id))
    return PatientStore(database, rules).resolve_key(key)


# The newest other final result queued for the same study and analyzer, in either outbox.
_PREVIOUS_FINAL = """
SELECT document FROM (
    SELECT document, created_at FROM hl7_outbox
     WHERE study_instance_uid = %(study)s AND message_control_id <> %(control_id)s
    UNION ALL
    SELECT document, created_at FROM fhir_outbox
     WHERE study_instance_uid = %(study)s AND idempotency_key <> %(report_uid)s
) queued
WHERE document ->> 'kind' = %(kind)s
  AND document -> 'analysis' ->> 'analyzer' = %(analyzer)s
  AND (document ->> 'final')::boolean
ORDER BY created_at DESC LIMIT 1
"""


def enqueue_result(database: Database, settings: Settings, document: ResultDocument) -> Enqueued:
    """Write the result's HL7 (and FHIR) outbox rows; a result queued before is left alone.

    A final result for a study and analyzer that already had another final result queued
    (sent, or waiting behind it in the patient's ordered queue) goes out as its correction:
    ORU OBR-25/OBX-11 ``C``, FHIR ``amended``.
    """
    study = document.study
    key = patient_key_for(database, settings, study.patient_id, study.issuer_of_patient_id)
    control_id = message_control_id(document)
    priority = priority_of(document.analysis.tier)
    hl7_queued = fhir_queued = False
    with database.connection() as conn, conn.transaction():
        if document.final and not document.replaces:
            previous = conn.execute(
                _PREVIOUS_FINAL,
                {
                    "study": study.study_instance_uid,
                    "control_id": control_id,
                    "report_uid": document.report_uid,
                    "kind": DOCUMENT_KIND,
                    "analyzer": document.analysis.analyzer,
                },
            ).fetchone()
            if previous is not None:
                replaced = ResultDocument.from_json(previous["document"])
                document = dataclasses.replace(document, replaces=replaced.report_uid)
        data = Jsonb(document.to_json())
        if settings.emr.enabled:
            hl7_queued = (
                conn.execute(
                    "INSERT INTO hl7_outbox (message_control_id, study_instance_uid, patient_key,"
                    " message_type, document, priority, clinical_context)"
                    " VALUES (%s, %s, %s, 'ORU^R01', %s, %s, 'none')"
                    " ON CONFLICT (message_control_id) DO NOTHING RETURNING id",
                    (control_id, study.study_instance_uid, key, data, priority),
                ).fetchone()
                is not None
            )
        if settings.fhir.enabled:
            fhir_queued = (
                conn.execute(
                    "INSERT INTO fhir_outbox (idempotency_key, study_instance_uid, patient_key,"
                    " document, priority, clinical_context) VALUES (%s, %s, %s, %s, %s, 'none')"
                    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                    (document.report_uid, study.study_instance_uid, key, data, priority),
                ).fetchone()
                is not None
            )
        conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
    return Enqueued(control_id, key, hl7_queued, fhir_queued, document.replaces)
