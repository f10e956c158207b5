"""The flow's send_oru task: a recorded study and its analysis end up in both EMR outboxes."""

from __future__ import annotations

from pathlib import Path

from pydicom import Dataset

from integrations.db.connection import open_database
from integrations.db.store import StudyStore
from integrations.dicom.header import read_header
from integrations.emr.document import ResultDocument
from integrations.result_files import save_analysis
from tasks.context import AnalysisRef, StudyContext
from tasks.emr import send_oru
from tasks.runtime import Runtime, install_runtime, reset_runtime
from tests.dicom_samples import make_instance, write
from tests.emr_samples import chest_result


def ordered_instance(folder: Path) -> Path:
    dataset = make_instance("emr-task", patient_id="0012345", accession="ACC-77")
    dataset.IssuerOfPatientID = "HOSP"
    dataset.ReferringPhysicianName = "HOUSE^GREGORY"
    dataset.RequestingPhysician = "WHO^ANNA"
    request = Dataset()
    request.RequestedProcedureID = "RP-77"
    request.RequestedProcedureDescription = "XR CHEST 2 VIEWS"
    request.PlacerOrderNumberImagingServiceRequest = "PLC-77"
    dataset.RequestAttributesSequence = [request]
    return write(dataset, folder)


def test_send_oru_queues_hl7_and_fhir_documents_once(settings_factory, tmp_path: Path) -> None:
    settings = settings_factory(fhir={"enabled": True, "base_url": "http://127.0.0.1:9/fhir"})
    database = open_database(settings)
    runtime = Runtime(settings=settings, database=database)
    install_runtime(runtime)
    try:
        path = ordered_instance(tmp_path / "spool")
        data = path.read_bytes()
        header = read_header(data)
        store = StudyStore(database)
        store.record_instance(
            header, path=str(path), size_bytes=len(data), calling_ae_title="ORTHANC"
        )
        uid = header.study_instance_uid
        result_path = save_analysis(tmp_path / "results", chest_result())
        context = StudyContext(uid, 1, "S0000TESTKEY", ("DX",), None, {"chest-xray": ()})
        reference = AnalysisRef(
            "chest-xray", str(result_path), "analysed", "Critical", "1.2.0", "Pneumothorax", (), 0.4
        )
        control_id = send_oru.fn(context, reference)
        assert send_oru.fn(context, reference) == control_id  # a rerun queues nothing new
        with database.connection() as conn:
            hl7 = conn.execute("SELECT * FROM hl7_outbox").fetchall()
            fhir = conn.execute("SELECT * FROM fhir_outbox").fetchall()
        steps = store.steps(uid, 1)
    finally:
        reset_runtime()
    assert len(hl7) == 1 and len(fhir) == 1
    row = hl7[0]
    assert row["message_control_id"] == control_id and row["payload"] is None
    assert row["patient_key"] == fhir[0]["patient_key"] == "HOSP|12345"
    assert row["priority"] == fhir[0]["priority"] == 2  # Critical
    document = ResultDocument.from_json(row["document"])
    assert document.order.placer_order_number == "PLC-77"
    assert document.order.requested_procedure_id == "RP-77"
    assert document.order.requesting_physician == "WHO^ANNA"
    assert document.order.accession_number == "ACC-77"
    assert document.analysis.primary_finding is not None
    assert document.analysis.primary_finding.label == "Pneumothorax"
    assert fhir[0]["idempotency_key"] == document.report_uid
    assert steps["send_oru:chest-xray"]["state"] == "completed"
    assert steps["send_oru:chest-xray"]["detail"]["hl7_queued"] is False  # the rerun's record
