"""A sender that aborts after 400 of a study's 680 instances and then resends the whole study
(what modalities and PACS do after a network error): the node keeps one copy of each
instance, the study stays open until the resend is quiet, and exactly one final result comes
out of one process-study run (a warm worker, the Prefect deployment, the real demo model).

The study is one chest radiograph (what the chest rule routes to the analyzer) and 679 small
CT slices of another series (stored and counted, not analysed), so the result is quick."""

from __future__ import annotations

import time

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_context

from models.phantoms.chest import chest_xray_study
from tests.fix_dcmtk import storescu
from tests.fix_hl7 import wait_until
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.site import running_node, running_worker
from tests.unit.results import synthetic

TOTAL = 680
ABORT_AFTER = 400
QUIET_SECONDS = 3.0
CHEST_RULE = {
    "name": "chest",
    "modality": ["DX"],
    "body_part": ["CHEST"],
    "analyzers": ["chest-xray"],
}


def study_datasets():
    chest = chest_xray_study(31, [], accession_number="RESEND-1", size=256).datasets[0]
    slices, _ = synthetic.ct_series(slices=TOTAL - 1, study_key="resend", shape=(16, 16))
    for number, ds in enumerate(slices, start=1):
        for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber"):
            setattr(ds, keyword, getattr(chest, keyword))
        ds.SeriesNumber = 9
        ds.InstanceNumber = number
    return [chest, *slices]


@pytest.mark.slow  # about 90 s with the Prefect server and the model
def test_abort_then_full_resend_is_deduplicated_and_gives_one_result(
    settings_factory, node_port, orthanc, prefect_api_url, demo_models_dir, tmp_path
):
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": ["MODALITY"]},
        pacs={"ae_title": PACS_AE_TITLE, "port": orthanc.dicom_port, "timeout_seconds": 10},
        study={"quiet_seconds": QUIET_SECONDS, "poll_seconds": 0.05},
        routing={"rules": [CHEST_RULE]},
        models={"dir": str(demo_models_dir), "device": "cpu"},
    )
    datasets = study_datasets()
    study_uid = str(datasets[0].StudyInstanceUID)
    files = []
    for ds in datasets:
        files.append(tmp_path / f"{ds.SOPInstanceUID}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    sender = AE(ae_title="MODALITY")
    sender.requested_contexts = [
        build_context(str(ds.SOPClassUID), ExplicitVRLittleEndian)
        for ds in {str(ds.SOPClassUID): ds for ds in datasets}.values()
    ]
    with running_node(settings) as site, running_worker(settings):
        first = sender.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
        assert first.is_established
        for ds in datasets[:ABORT_AFTER]:
            assert first.send_c_store(ds).Status == 0
        first.abort()  # the network drops; the modality starts the study again at once
        resent = storescu("MODALITY", NODE_AE_TITLE, site.port, files)
        assert resent.returncode == 0, resent.stdout[-2000:] + resent.stderr[-2000:]
        resend_done = time.monotonic()
        wait_until(
            lambda: (
                _rows(site, "SELECT state FROM dispatch WHERE study_instance_uid = %s", study_uid)
                == [{"state": "completed"}]
            ),
            180,
            "one completed run",
        )
        closed_after = time.monotonic() - resend_done
        time.sleep(QUIET_SECONDS + 1.0)  # nothing re-opens it, nothing runs again
        dispatch = _rows(
            site, "SELECT generation, state FROM dispatch WHERE study_instance_uid = %s", study_uid
        )
        study = _rows(
            site, "SELECT generation, state FROM studies WHERE study_instance_uid = %s", study_uid
        )
        instances = _rows(
            site, "SELECT count(*) AS n FROM instances WHERE study_instance_uid = %s", study_uid
        )
        closed = _rows(
            site,
            "SELECT (SELECT min(queued_at) FROM dispatch WHERE study_instance_uid = %(s)s)"
            " - (SELECT max(received_at) FROM instances WHERE study_instance_uid = %(s)s) AS gap",
            study_uid,
        )
        analyses = _rows(
            site,
            "SELECT analyzer, generation FROM analyses WHERE study_instance_uid = %s",
            study_uid,
        )
        reports = _rows(
            site,
            "SELECT count(*) AS n FROM results_outbox WHERE study_instance_uid = %s AND part = 'report'",
            study_uid,
        )
        changed = _rows(
            site, "SELECT count(*) AS n FROM node_events WHERE kind <> 'association_rejected'", None
        )
        duplicates = site.node.counters.duplicates
    print(f"680-instance resend: run completed {closed_after:.1f} s after the resend ended")
    assert instances == [{"n": TOTAL}]
    assert duplicates == ABORT_AFTER
    assert changed == [{"n": 0}]
    assert dispatch == [{"generation": 1, "state": "completed"}]
    assert study == [{"generation": 1, "state": "done"}]
    assert closed[0]["gap"].total_seconds() >= QUIET_SECONDS * 0.9  # closed only once quiet
    assert analyses == [{"analyzer": "chest-xray", "generation": 1}]
    assert reports[0]["n"] >= 1


def _rows(site, query: str, study_uid: str | None) -> list[dict]:
    with site.database.connection() as conn:
        if study_uid is None:
            return conn.execute(query).fetchall()
        if "%(s)s" in query:
            return conn.execute(query, {"s": study_uid}).fetchall()
        return conn.execute(query, (study_uid,)).fetchall()
