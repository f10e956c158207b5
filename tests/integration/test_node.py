"""The DICOM node against real peers: pynetdicom, dcmtk tools and Orthanc."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, _config
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification  # type: ignore[attr-defined]

from integrations.dicom.header import dataset_offset
from tests.dicom_samples import make_instance, study_files, write
from tests.fix_dcmtk import echoscu, storescu
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.site import running_node


@pytest.fixture
def node_settings(settings_factory, node_port):
    def make(**node):
        return settings_factory(
            node={
                "ae_title": NODE_AE_TITLE,
                "port": node_port,
                "allowed_callers": [
                    PACS_AE_TITLE,
                    "MODALITY",
                    "PYSCU",
                    {"ae_title": "PINNED", "host": "10.9.9.9"},
                ],
                **node,
            },
            study={"quiet_seconds": 30},
        )

    return make


def associate(
    port: int, calling: str = "PYSCU", called: str = NODE_AE_TITLE, contexts=(Verification,)
):
    ae = AE(ae_title=calling)
    for context in contexts:
        ae.add_requested_context(context, ExplicitVRLittleEndian)
    return ae.associate("127.0.0.1", port, ae_title=called)


def test_echo_from_pynetdicom_dcmtk_and_orthanc(node_settings, orthanc, dcmtk_tools):
    with running_node(node_settings()) as site:
        assoc = associate(site.port)
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        result = echoscu("MODALITY", NODE_AE_TITLE, site.port)
        assert result.returncode == 0, result.stderr
        assert orthanc.client.echo("pacsflow")


def test_unknown_calling_ae_is_rejected_and_recorded(node_settings, dcmtk_tools):
    with running_node(node_settings()) as site:
        assoc = associate(site.port, calling="STRANGER")
        assert assoc.is_rejected
        assert assoc.acceptor.primitive.diagnostic == 0x03  # calling AE title not recognised
        result = echoscu("STRANGER", NODE_AE_TITLE, site.port)
        assert result.returncode != 0
        with site.database.connection() as conn:
            events = conn.execute(
                "SELECT kind, calling_ae_title, detail FROM node_events"
            ).fetchall()
        assert {(e["kind"], e["calling_ae_title"]) for e in events} == {
            ("association_rejected", "STRANGER")
        }
        assert "not in allowed_callers" in events[0]["detail"]


def test_wrong_called_ae_and_wrong_host_are_rejected(node_settings):
    with running_node(node_settings()) as site:
        wrong_called = associate(site.port, called="SOMEONEELSE")
        assert wrong_called.is_rejected
        assert wrong_called.acceptor.primitive.diagnostic == 0x07  # called AE title not recognised
        pinned_elsewhere = associate(site.port, calling="PINNED")
        assert pinned_elsewhere.is_rejected
        # the node keeps serving allowed callers
        allowed = associate(site.port)
        assert allowed.is_established
        allowed.release()


def test_storescu_instances_are_spooled_byte_exact_and_recorded(
    node_settings, tmp_path, dcmtk_tools
):
    files = study_files(tmp_path / "send", "store-1", count=3)
    with running_node(node_settings()) as site:
        result = storescu("MODALITY", NODE_AE_TITLE, site.port, files)
        assert result.returncode == 0, result.stderr
        instances = site.store.instances(make_instance("store-1").StudyInstanceUID)
    assert len(instances) == 3
    for sent in files:
        original = sent.read_bytes()
        sop_uid = dcmread(sent).SOPInstanceUID
        (stored,) = [i for i in instances if i.sop_instance_uid == sop_uid]
        received = Path(stored.path).read_bytes()
        # the dataset part is byte-identical to what the modality sent
        assert received[dataset_offset(received) :] == original[dataset_offset(original) :]
        assert Path(stored.path).parent.parent.parent == site.settings.node.spool_dir


def test_duplicate_instance_is_stored_once_with_success(node_settings, tmp_path, dcmtk_tools):
    files = study_files(tmp_path / "send", "dup-1", count=1)
    with running_node(node_settings()) as site:
        for _ in range(2):
            result = storescu("MODALITY", NODE_AE_TITLE, site.port, files)
            assert result.returncode == 0, result.stderr
        study = site.store.study(make_instance("dup-1").StudyInstanceUID)
        assert study is not None and study.instance_count == 1
        assert site.node.counters.duplicates == 1


def test_truncated_instance_is_refused_while_good_ones_in_the_same_association_are_kept(
    node_settings, tmp_path
):
    good_1, good_2 = study_files(tmp_path / "good", "trunc-1", count=2)
    bad_source = write(make_instance("trunc-1", number=3), tmp_path / "bad")
    raw = bad_source.read_bytes()
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(raw[: len(raw) - 3000])  # cut inside Pixel Data
    with running_node(node_settings()) as site:
        assoc = associate(site.port, contexts=(DigitalXRayImageStorageForPresentation,))
        assert assoc.is_established
        sender_config = _config.STORE_SEND_CHUNKED_DATASET
        _config.STORE_SEND_CHUNKED_DATASET = True  # send the file's bytes as they are
        try:
            statuses = [assoc.send_c_store(path).Status for path in (good_1, truncated, good_2)]
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = sender_config
        assoc.release()
        assert statuses == [0x0000, 0xC000, 0x0000]
        uids = {
            i.sop_instance_uid
            for i in site.store.instances(make_instance("trunc-1").StudyInstanceUID)
        }
        assert uids == {dcmread(good_1).SOPInstanceUID, dcmread(good_2).SOPInstanceUID}
        with site.database.connection() as conn:
            (event,) = conn.execute(
                "SELECT detail FROM node_events WHERE kind = 'store_refused'"
            ).fetchall()
        assert "truncated" in event["detail"]


def test_dataset_uid_that_could_escape_the_spool_is_refused(node_settings, tmp_path):
    evil = make_instance("evil-1")
    evil.StudyInstanceUID = "../../../../tmp/evil"
    buffer = io.BytesIO()
    evil.save_as(buffer, enforce_file_format=True)
    path = tmp_path / "evil.dcm"
    path.write_bytes(buffer.getvalue())
    with running_node(node_settings()) as site:
        assoc = associate(site.port, contexts=(DigitalXRayImageStorageForPresentation,))
        _config.STORE_SEND_CHUNKED_DATASET = True
        try:
            response = assoc.send_c_store(path)
        finally:
            _config.STORE_SEND_CHUNKED_DATASET = False
        assoc.release()
        assert response.Status == 0xC000
        assert "Study Instance UID" in str(response.ErrorComment)
        assert not list(site.settings.node.spool_dir.rglob("*evil*"))
        assert not (tmp_path / "tmp" / "evil").exists()


def test_orthanc_pushes_a_study_to_the_node(node_settings, clean_orthanc, tmp_path):
    files = study_files(tmp_path / "upload", "orthanc-1", count=4)
    for path in files:
        clean_orthanc.client.upload(path.read_bytes())
    study_uid = make_instance("orthanc-1").StudyInstanceUID
    with running_node(node_settings()) as site:
        outcome = clean_orthanc.client.send_study("pacsflow", [study_uid])
        assert outcome["FailedInstancesCount"] == 0
        assert len(site.store.instances(study_uid)) == 4
        assert site.store.study(study_uid).calling_ae_title == PACS_AE_TITLE


def test_a_write_failing_in_the_spool_thread_is_refused_and_leaves_no_row(node_settings):
    """The file is written and fsynced in a background thread while the row waits,
    uncommitted: when the file cannot be stored, the instance is refused out of resources and
    nothing is committed, and the association goes on."""
    blocked, fine = make_instance("blocked-1"), make_instance("fine-1")
    with running_node(node_settings()) as site:
        # a file where the study's folder would go: creating the series folder fails
        spool_dir = site.settings.node.spool_dir
        spool_dir.mkdir(parents=True, exist_ok=True)
        (spool_dir / blocked.StudyInstanceUID).write_bytes(b"")
        assoc = associate(site.port, contexts=(DigitalXRayImageStorageForPresentation,))
        assert assoc.is_established
        refused, stored = assoc.send_c_store(blocked), assoc.send_c_store(fine)
        assoc.release()
        assert refused.Status == 0xA700
        assert str(refused.ErrorComment).startswith("cannot store")
        assert stored.Status == 0x0000
        with site.database.connection() as conn:
            recorded = conn.execute("SELECT sop_instance_uid FROM instances").fetchall()
            (event,) = conn.execute(
                "SELECT detail FROM node_events WHERE kind = 'store_refused'"
            ).fetchall()
        assert [row["sop_instance_uid"] for row in recorded] == [fine.SOPInstanceUID]
        assert "0xA700 cannot store" in event["detail"]
        assert not list(spool_dir.rglob(".incoming-*"))
        assert (
            spool_dir
            / fine.StudyInstanceUID
            / fine.SeriesInstanceUID
            / f"{fine.SOPInstanceUID}.dcm"
        ).exists()


def test_the_instance_row_is_committed_only_after_its_file_is_durable(
    node_settings, tmp_path, dcmtk_tools
):
    """The node writes the row while the file is fsynced in the background; at the commit
    the file is under its final name, and until then no other session sees the row."""
    from integrations.db.store import StudyStore

    files = study_files(tmp_path / "send", "order-1", count=3)
    seen: list[tuple[bool, int]] = []
    record = StudyStore.record_instance

    def watched(self, header, **fields):
        wait = fields["before_commit"]

        def before_commit():
            wait()
            with self.database.connection() as other:
                visible = other.execute(
                    "SELECT count(*) AS n FROM instances WHERE sop_instance_uid = %s",
                    (header.sop_instance_uid,),
                ).fetchone()["n"]
            seen.append((Path(fields["path"]).exists(), visible))

        return record(self, header, **{**fields, "before_commit": before_commit})

    settings = node_settings()
    pool_size = settings.database.pool_size
    assert pool_size >= 2  # the watcher takes a second connection
    with running_node(settings) as site:
        StudyStore.record_instance = watched  # type: ignore[method-assign]
        try:
            result = storescu("MODALITY", NODE_AE_TITLE, site.port, files)
        finally:
            StudyStore.record_instance = record  # type: ignore[method-assign]
        assert result.returncode == 0, result.stderr
        assert len(site.store.instances(make_instance("order-1").StudyInstanceUID)) == 3
    assert seen == [(True, 0)] * 3
