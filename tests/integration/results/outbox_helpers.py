"""Result objects queued in the results outbox as the flow queues them, and what Orthanc saw
arrive (its /changes log), for the results outbox and PACS outage tests (I/O)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydicom import Dataset

from integrations.db.connection import Database
from integrations.db.results_outbox import PACS_DESTINATION, QueuedObject, ResultsOutbox
from integrations.dicom.result_common import ResultKind
from integrations.dicom.result_objects import build_result_objects
from integrations.result_files import save_dataset
from integrations.settings import ResultsSettings
from tests.fix_orthanc import OrthancPeer
from tests.unit.results import synthetic


def add_study(database: Database, image: Dataset) -> str:
    study_uid = str(image.StudyInstanceUID)
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO studies (study_instance_uid, patient_id, patient_name, state)"
            " VALUES (%s, %s, %s, 'done') ON CONFLICT DO NOTHING",
            (study_uid, str(image.PatientID), str(image.PatientName)),
        )
    return study_uid


def built_results(
    folder: Path, study_key: str = "cxr-1"
) -> tuple[Dataset, list[QueuedObject], list[QueuedObject]]:
    """A chest radiograph and its SR and overlays, saved as the flow saves them."""
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    image, _ = synthetic.chest_radiograph(lesion=lesion, study_key=study_key)
    folder = folder / study_key
    folder.mkdir(parents=True, exist_ok=True)
    objects = build_result_objects(
        synthetic.chest_analysis(image, lesion), [image], profile=ResultsSettings()
    )
    reports, overlays = [], []
    for item in objects:
        queued = QueuedObject.from_file(save_dataset(folder, item.dataset), str(item.kind))
        (reports if item.kind is ResultKind.SR else overlays).append(queued)
    return image, reports, overlays


def enqueue(
    database: Database,
    study_uid: str,
    reports: list[QueuedObject],
    overlays: list[QueuedObject],
    *,
    give_up_after_hours: float = 72.0,
) -> int:
    outbox = ResultsOutbox(database)
    added = 0
    for part, objects in (("report", reports), ("overlay", overlays)):
        added += outbox.enqueue(
            destination=PACS_DESTINATION,
            study_instance_uid=study_uid,
            generation=1,
            part=part,  # type: ignore[arg-type]
            objects=objects,
            give_up_after_hours=give_up_after_hours,
        )
    return added


def new_instances(orthanc: OrthancPeer, since: int = 0) -> list[dict[str, Any]]:
    """Orthanc's NewInstance changes after ``since``, in arrival order, with the SOP UID."""
    changes = orthanc.client.http.get("/changes", params={"since": since, "limit": 10000}).json()
    arrived = []
    for change in changes["Changes"]:
        if change["ChangeType"] != "NewInstance":
            continue
        tags = orthanc.client.http.get(f"/instances/{change['ID']}").json()["MainDicomTags"]
        arrived.append({"seq": change["Seq"], "sop_instance_uid": tags["SOPInstanceUID"]})
    return arrived


def last_change(orthanc: OrthancPeer) -> int:
    return int(orthanc.client.http.get("/changes", params={"last": ""}).json()["Last"])


def outbox_rows(database: Database, study_uid: str | None = None) -> list[dict[str, Any]]:
    with database.connection() as conn:
        if study_uid is None:
            return conn.execute("SELECT * FROM results_outbox ORDER BY id").fetchall()
        return conn.execute(
            "SELECT * FROM results_outbox WHERE study_instance_uid = %s ORDER BY id", (study_uid,)
        ).fetchall()


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")
