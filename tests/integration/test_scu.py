"""The node as a client of a real PACS (Orthanc): C-ECHO, C-STORE, C-FIND, C-MOVE."""

from __future__ import annotations

import io

import pytest
from pydicom import Dataset

from deployments.orthanc import free_port
from integrations.dicom.header import read_header
from integrations.dicom.scu import DicomClient, Peer
from integrations.errors import PeerRejectedError, PeerUnavailableError
from tests.dicom_samples import make_instance
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.site import running_node


def client(port: int) -> DicomClient:
    return DicomClient(
        Peer(PACS_AE_TITLE, "127.0.0.1", port, calling_ae_title=NODE_AE_TITLE, timeout_seconds=5)
    )


def test_echo_store_and_find_against_orthanc(clean_orthanc):
    pacs = client(clean_orthanc.dicom_port)
    pacs.echo()
    datasets = [make_instance("scu-1", number=i, patient_id="SCU-PAT") for i in (1, 2)]
    assert pacs.store(datasets) == [0x0000, 0x0000]
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.PatientID = "SCU-PAT"
    query.StudyInstanceUID = ""
    query.NumberOfStudyRelatedInstances = ""
    (match,) = pacs.find(query)
    assert match.StudyInstanceUID == datasets[0].StudyInstanceUID
    assert int(match.NumberOfStudyRelatedInstances) == 2


def test_move_brings_a_study_to_the_node(settings_factory, clean_orthanc, node_port):
    prior = make_instance("scu-prior", number=1, patient_id="SCU-MOVE")
    buffer = io.BytesIO()
    prior.save_as(buffer, enforce_file_format=True)
    clean_orthanc.client.upload(buffer.getvalue())
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": [PACS_AE_TITLE]},
        study={"quiet_seconds": 60},
    )
    with running_node(settings) as site:
        site.store.register_prior(prior.StudyInstanceUID, "SCU-MOVE", "")
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = prior.StudyInstanceUID
        outcome = client(clean_orthanc.dicom_port).move(query, NODE_AE_TITLE)
        assert (outcome.completed, outcome.failed) == (1, 0)
        study = site.store.study(prior.StudyInstanceUID)
        assert study.instance_count == 1
        assert study.state == "prior"  # a prior is kept, never processed itself


def test_unreachable_peer_is_a_transient_error_that_says_connection_refused():
    port = free_port()  # nothing listens there
    with pytest.raises(PeerUnavailableError) as raised:
        client(port).echo()
    assert str(raised.value) == (
        f"DICOM peer {PACS_AE_TITLE}@127.0.0.1:{port} refused the association (connection refused)"
    )
    assert raised.value.advice == (
        f"check that the DICOM peer is up and listens on 127.0.0.1:{port},"
        f" and that our AE {NODE_AE_TITLE} is registered"
    )


def test_a_rejected_calling_ae_title_is_named_in_plain_words(settings_factory, node_port):
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": [PACS_AE_TITLE]}
    )
    stranger = DicomClient(
        Peer(NODE_AE_TITLE, "127.0.0.1", node_port, calling_ae_title="STRANGER", role="PACS")
    )
    with running_node(settings, close_studies=False), pytest.raises(PeerRejectedError) as raised:
        stranger.echo()
    assert "calling AE title not recognised" in str(raised.value)
    assert raised.value.advice.startswith("check that the PACS knows our AE STRANGER")


def test_a_moved_prior_never_reopens_a_study_pacsflow_already_analysed(
    settings_factory, clean_orthanc, node_port
):
    """The prior comes back with pacsflow's own SR in it: kept, but the study stays done."""
    first = make_instance("scu-done", number=1, patient_id="SCU-DONE")
    our_sr_stand_in = make_instance("scu-done", number=2, patient_id="SCU-DONE")
    for dataset in (first, our_sr_stand_in):
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        clean_orthanc.client.upload(buffer.getvalue())
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": [PACS_AE_TITLE]},
        study={"quiet_seconds": 60},
    )
    with running_node(settings, close_studies=False) as site:
        # the study as it first arrived from a modality...
        site.store.record_instance(
            read_header(_encoded(first)),
            path="/dev/null",
            size_bytes=0,
            calling_ae_title="MODALITY",
        )
        with site.database.connection() as conn:  # ...analysed and done
            conn.execute(
                "UPDATE studies SET state = 'done' WHERE study_instance_uid = %s",
                (first.StudyInstanceUID,),
            )
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = first.StudyInstanceUID
        outcome = client(clean_orthanc.dicom_port).move(query, NODE_AE_TITLE)
        assert outcome.failed == 0
        study = site.store.study(first.StudyInstanceUID)
        assert study.instance_count == 2  # the SR stand-in was kept
        assert (study.state, study.generation) == ("done", 1)  # and nothing re-opened


def _encoded(dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
