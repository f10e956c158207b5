"""Reruns against a PACS with Orthanc's defaults (a known SOP Instance UID keeps its first copy).

A rerun with unchanged inputs rebuilds the same objects under the same UIDs; a rerun with
changed inputs (here a site urgency rule) stores a new SR under new UIDs that names its
predecessor, records the old one as superseded, and the EMR gets the corrected result
(ORU OBR-25 and OBX-11 ``C``).
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from pydicom import dcmread

from integrations.db.analyses import AnalysisStore
from integrations.hl7.sender import Hl7Sender
from tests.emr_samples import segments_of
from tests.fix_orthanc import NODE_ALIAS, OrthancPeer
from tests.integration.results.conftest import completed_runs, site
from tests.integration.test_end_to_end import upload, wait_for
from tests.site import running_node, running_results_sender, running_worker

# A site rule that changes what the analysis concludes: every finding Routine.
ALL_ROUTINE = {"name": "site-all-routine", "tier": "Routine", "label_pattern": ".*"}


def stored_srs(orthanc: OrthancPeer, study_uid: str) -> dict[str, Any]:
    """SOP Instance UID -> dataset of every SR Orthanc holds for the study."""
    found = {}
    for instance in orthanc.client.instances_of(study_uid):
        data = orthanc.client.instance_file(instance["ID"])
        dataset = dcmread(io.BytesIO(data))
        if dataset.Modality == "SR":
            found[str(dataset.SOPInstanceUID)] = dataset
    return found


def rerun_and_wait(site_handle, study_uid: str, runs: int) -> None:
    assert site_handle.store.request_rerun(study_uid) is not None
    wait_for(lambda: completed_runs(site_handle, study_uid) == runs)


@pytest.mark.slow
def test_a_rerun_with_changed_inputs_amends_the_sr_and_the_emr_under_new_uids(
    settings_factory,
    node_port,
    default_orthanc,
    demo_models_dir,
    make_mllp_peer,
    prefect_api_url,
):
    from models.phantoms.chest import chest_xray_study

    peer = make_mllp_peer()
    study = chest_xray_study(31, ["Pneumothorax"], accession_number="AMEND-1")
    uid = study.study_instance_uid
    upload(default_orthanc, study.datasets)
    settings = site(settings_factory, node_port, default_orthanc, demo_models_dir, peer.port)
    changed = site(
        settings_factory,
        node_port,
        default_orthanc,
        demo_models_dir,
        peer.port,
        urgency={"rules": [ALL_ROUTINE]},
    )
    with running_node(settings) as node, running_results_sender(settings):
        with running_worker(settings):
            assert default_orthanc.client.send_study(NODE_ALIAS, [uid])["FailedInstancesCount"] == 0
            wait_for(lambda: completed_runs(node, uid) == 1)
            first = wait_for(lambda: stored_srs(default_orthanc, uid))
            objects_first = {row["sop_instance_uid"] for row in node_objects(node, uid)}
            # unchanged inputs: the same UIDs, nothing new in the PACS
            rerun_and_wait(node, uid, 2)
            assert stored_srs(default_orthanc, uid).keys() == first.keys()
            assert {row["sop_instance_uid"] for row in node_objects(node, uid)} == objects_first
        with running_worker(changed):
            rerun_and_wait(node, uid, 3)
        held = wait_for(lambda: len(found := stored_srs(default_orthanc, uid)) == 2 and found)
        records = node_objects(node, uid)
        sender = Hl7Sender(node.database, settings)
        # drain until both results are at the EMR (a slow ACK is retried after a short delay)
        wait_for(lambda: sender.drain(timeout=5) >= 0 and len(peer.received()) >= 2)
        sender.close()
    (first_uid,) = first
    assert len(held) == 2 and first_uid in held
    (new_uid,) = set(held) - {first_uid}
    new_sr = held[new_uid]
    predecessor = new_sr.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0]
    assert predecessor.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == first_uid
    assert (new_sr.CompletionFlag, new_sr.PreliminaryFlag, new_sr.VerificationFlag) == (
        "COMPLETE",
        "FINAL",
        "UNVERIFIED",
    )
    by_uid = {row["sop_instance_uid"]: row for row in records}
    assert by_uid[first_uid]["status"] == "superseded"
    assert by_uid[first_uid]["superseded_by"] == new_uid
    live_srs = [r for r in records if r["kind"] == "sr" and r["status"] != "superseded"]
    assert [row["sop_instance_uid"] for row in live_srs] == [new_uid]
    # every replaced overlay is superseded by the new SR; no UID was reused
    assert objects_first.isdisjoint(
        row["sop_instance_uid"] for row in records if row["status"] != "superseded"
    )
    messages = peer.wait_for(2)
    assert len(messages) == 2
    statuses = [result_statuses(message["text"]) for message in messages]
    assert statuses == [("F", {"F"}), ("C", {"C"})]


def node_objects(node, study_uid: str) -> list[dict[str, Any]]:
    return AnalysisStore(node.database).result_objects(study_uid)


def result_statuses(text: str) -> tuple[str, set[str]]:
    segments = list(segments_of(text))
    (obr,) = [segment for segment in segments if segment.name == "OBR"]
    return obr.value(25), {segment.value(11) for segment in segments if segment.name == "OBX"}
