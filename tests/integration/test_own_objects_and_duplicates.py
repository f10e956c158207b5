"""What comes back to the node: pacsflow's own objects never re-open a study, and a known SOP
Instance UID with other content is reported and handled by ``[node] on_changed_duplicate``.

The node runs for real on a free port; pynetdicom and dcmtk's storescu send to it.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation  # type: ignore[attr-defined]

from integrations.db.analyses import AnalysisStore
from integrations.dicom import status
from integrations.dicom.header import dataset_offset
from integrations.dicom.spool import file_content_sha256
from tests.dicom_samples import make_instance, write
from tests.fix_dcmtk import storescu
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.site import running_node

CALLER = "PYSCU"


@pytest.fixture
def node_settings(settings_factory, node_port):
    def make(**node):
        return settings_factory(
            node={
                "ae_title": NODE_AE_TITLE,
                "port": node_port,
                "allowed_callers": [PACS_AE_TITLE, CALLER, "MODALITY"],
                **node,
            },
            study={"quiet_seconds": 30},
        )

    return make


def send(port: int, *datasets: Dataset) -> list[Dataset]:
    """C-STORE each dataset on one association; the response of each."""
    ae = AE(ae_title=CALLER)
    ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE_TITLE)
    assert assoc.is_established
    try:
        return [assoc.send_c_store(ds) for ds in datasets]
    finally:
        assoc.release()


def rows(site, query: str, *params):
    with site.database.connection() as conn:
        return conn.execute(query, params).fetchall()


def register_result_object(site, ds: Dataset, kind: str = "sr") -> None:
    """What tasks.results records when it builds an object, before anything is sent."""
    AnalysisStore(site.database).record_result_object(
        sop_instance_uid=ds.SOPInstanceUID,
        study_instance_uid=ds.StudyInstanceUID,
        series_instance_uid=ds.SeriesInstanceUID,
        sop_class_uid=ds.SOPClassUID,
        kind=kind,
        analyzer="chest-xray",
        model_version="1.0",
        generation=1,
        path="/results/of/the/run.dcm",
    )


def processed_study(site, name: str) -> Dataset:
    """A study the node received and a run processed (state done, generation 1)."""
    image = make_instance(name)
    (response,) = send(site.port, image)
    assert response.Status == status.SUCCESS
    rows(
        site,
        "UPDATE studies SET state = 'done', closed_at = clock_timestamp()"
        " WHERE study_instance_uid = %s RETURNING 1",
        image.StudyInstanceUID,
    )
    return image


# -- item 6: our own objects ----------------------------------------------------------------


def test_own_objects_given_back_are_kept_and_never_reopen_the_study(node_settings):
    with running_node(node_settings(), close_studies=False) as site:
        image = processed_study(site, "own-1")
        study_uid = image.StudyInstanceUID
        ours = make_instance("own-1", series="sr", number=1, modality="SR")
        register_result_object(site, ours)
        # another object in a series pacsflow created (a PACS that re-UIDs, a split SR)
        same_series = make_instance("own-1", series="sr", number=2, modality="SR")
        responses = send(site.port, ours, same_series, ours)  # and a second give-back
        assert [r.Status for r in responses] == [status.SUCCESS] * 3
        study = site.store.study(study_uid)
        assert (study.state, study.generation) == ("done", 1)
        assert rows(site, "SELECT 1 FROM dispatch WHERE study_instance_uid = %s", study_uid) == []
        recorded = rows(
            site,
            "SELECT sop_instance_uid, ours, content_sha256 FROM instances"
            " WHERE study_instance_uid = %s ORDER BY sop_instance_uid",
            study_uid,
        )
        assert {r["sop_instance_uid"]: r["ours"] for r in recorded} == {
            image.SOPInstanceUID: False,
            ours.SOPInstanceUID: True,
            same_series.SOPInstanceUID: True,
        }
        assert all(len(r["content_sha256"]) == 64 for r in recorded)
        # routing never sees pacsflow's series as an input
        assert [s.series_instance_uid for s in site.store.series_of(study_uid)] == [
            image.SeriesInstanceUID
        ]
        assert site.node.counters.own_objects == 2
        # the control: a genuinely new image of the study does re-open it
        (late,) = send(site.port, make_instance("own-1", series="late", number=1))
        assert late.Status == status.SUCCESS
        study = site.store.study(study_uid)
        assert (study.state, study.generation) == ("receiving", 2)


def test_an_own_object_arriving_while_its_study_is_processed_changes_nothing(node_settings):
    with running_node(node_settings(), close_studies=False) as site:
        image = processed_study(site, "own-2")
        rows(
            site,
            "UPDATE studies SET state = 'processing' WHERE study_instance_uid = %s RETURNING 1",
            image.StudyInstanceUID,
        )
        before = site.store.study(image.StudyInstanceUID)
        ours = make_instance("own-2", series="gsps", number=1, modality="PR")
        register_result_object(site, ours, kind="gsps")
        (response,) = send(site.port, ours)
        assert response.Status == status.SUCCESS
        after = site.store.study(image.StudyInstanceUID)
        assert (after.state, after.generation, after.last_received_at) == (
            "processing",
            1,
            before.last_received_at,
        )


# -- item 7: changed duplicates ---------------------------------------------------------------


def changed(ds: Dataset) -> Dataset:
    """The same SOP Instance UID with other content (a re-sent, corrected image)."""
    other = copy.deepcopy(ds)
    other.PixelData = bytes(reversed(ds.PixelData))
    other.SeriesDescription = "re-sent"
    return other


def events(site, kind: str = "changed_duplicate"):
    return rows(
        site,
        "SELECT detail, sop_instance_uid, study_instance_uid, calling_ae_title,"
        " first_content_sha256, received_content_sha256 FROM node_events WHERE kind = %s",
        kind,
    )


def stored_path(site, ds: Dataset) -> Path:
    (row,) = rows(site, "SELECT path FROM instances WHERE sop_instance_uid = %s", ds.SOPInstanceUID)
    return Path(row["path"])


@pytest.mark.parametrize(
    ("mode", "expected_status", "kept"),
    [
        ("keep-first", status.SUCCESS, "first"),
        ("replace", status.SUCCESS, "second"),
        ("refuse", status.STORE_REFUSED_CHANGED_DUPLICATE, "first"),
    ],
)
def test_a_changed_duplicate_is_logged_recorded_and_handled_by_the_policy(
    node_settings, caplog, mode, expected_status, kept
):
    first = make_instance("changed-1", patient_name="Secret^Name", patient_id="MRN-SECRET")
    second = changed(first)
    settings = node_settings(on_changed_duplicate=mode)
    with running_node(settings, close_studies=False) as site:
        (response,) = send(site.port, first)
        assert response.Status == status.SUCCESS
        path = stored_path(site, first)
        first_hash = file_content_sha256(path)
        with caplog.at_level(logging.WARNING, logger="integrations.dicom.scp"):
            (response,) = send(site.port, second)
        assert response.Status == expected_status
        if mode == "refuse":
            assert "known with other content" in response.ErrorComment
            assert response.OffendingElement == 0x00080018
        (event,) = events(site)
        kept_path = stored_path(site, first)
        kept_hash = file_content_sha256(kept_path)
        (row,) = rows(
            site,
            "SELECT content_sha256, size_bytes FROM instances WHERE sop_instance_uid = %s",
            first.SOPInstanceUID,
        )
        study = site.store.study(first.StudyInstanceUID)
        spooled = list(settings.node.spool_dir.rglob("*.dcm"))
    assert event["detail"] == mode
    assert (event["sop_instance_uid"], event["study_instance_uid"], event["calling_ae_title"]) == (
        first.SOPInstanceUID,
        first.StudyInstanceUID,
        CALLER,
    )
    assert event["first_content_sha256"] == first_hash
    assert len(event["received_content_sha256"]) == 64
    assert event["received_content_sha256"] != first_hash
    assert kept_hash == (first_hash if kept == "first" else event["received_content_sha256"])
    assert row["content_sha256"] == kept_hash  # the row names the file that is there
    assert row["size_bytes"] == kept_path.stat().st_size
    assert len(spooled) == 1  # nothing left beside the kept file
    assert study.instance_count == 1
    (warning,) = [
        r for r in caplog.records if r.levelno == logging.WARNING and r.name.endswith(".scp")
    ]
    message = warning.getMessage()
    assert first.SOPInstanceUID in message
    assert "Secret" not in message and "MRN-SECRET" not in message


def test_an_identical_duplicate_stays_a_silent_success(node_settings, caplog, tmp_path):
    files = [write(make_instance("same-1"), tmp_path / "send")]
    with running_node(node_settings(on_changed_duplicate="refuse"), close_studies=False) as site:
        with caplog.at_level(logging.DEBUG, logger="integrations.dicom.scp"):
            for _ in range(2):
                result = storescu("MODALITY", NODE_AE_TITLE, site.port, files)
                assert result.returncode == 0, result.stderr
        assert events(site) == []
        assert site.node.counters.duplicates == 1
        assert site.node.counters.changed_duplicates == 0
    assert not [
        r for r in caplog.records if r.levelno >= logging.WARNING and r.name.endswith(".scp")
    ]


def test_storescu_resending_changed_content_is_refused_under_refuse(
    node_settings, tmp_path, dcmtk_tools
):
    first = make_instance("changed-2")
    original = write(first, tmp_path / "first")
    resent = write(changed(first), tmp_path / "second")
    with running_node(node_settings(on_changed_duplicate="refuse"), close_studies=False) as site:
        assert storescu("MODALITY", NODE_AE_TITLE, site.port, [original]).returncode == 0
        result = storescu("MODALITY", NODE_AE_TITLE, site.port, [resent], "127.0.0.1", "-v")
        assert result.returncode != 0
        # dcmtk reads 0xC100 as what PS3.4 says the Cxxx class is
        assert "Received Store Response (Error: CannotUnderstand)" in result.stderr
        (event,) = events(site)
        assert event["calling_ae_title"] == "MODALITY"
        assert file_content_sha256(stored_path(site, first)) == event["first_content_sha256"]


def test_a_changed_duplicate_of_an_instance_recorded_before_hashes_is_still_seen(node_settings):
    first = make_instance("legacy-1")
    with running_node(node_settings(), close_studies=False) as site:
        send(site.port, first)
        rows(
            site,
            "UPDATE instances SET content_sha256 = NULL WHERE sop_instance_uid = %s RETURNING 1",
            first.SOPInstanceUID,
        )
        (same,) = send(site.port, first)
        assert events(site) == []
        (other,) = send(site.port, changed(first))
        (event,) = events(site)
        assert event["first_content_sha256"] == file_content_sha256(stored_path(site, first))
    assert same.Status == other.Status == status.SUCCESS


def test_replace_keeps_an_instance_in_its_study_and_refuses_moving_it(node_settings):
    """A known SOP Instance UID that now names another series cannot be replaced in place:
    under replace the node refuses it, and the file that landed beside the first is removed."""
    first = make_instance("moved-1")
    elsewhere = changed(first)
    elsewhere.SeriesInstanceUID = make_instance("moved-1", series="other").SeriesInstanceUID
    settings = node_settings(on_changed_duplicate="replace")
    with running_node(settings, close_studies=False) as site:
        send(site.port, first)
        (response,) = send(site.port, elsewhere)
        (event,) = events(site)
        spooled = list(settings.node.spool_dir.rglob("*.dcm"))
        assert spooled == [stored_path(site, first)]
    assert response.Status == status.STORE_REFUSED_CHANGED_DUPLICATE
    assert event["detail"] == "refuse"


def test_a_file_recorded_after_a_crash_gets_its_content_hash(node_settings, database):
    """Spool files a crash left without a row are recorded at start with their hash, so a
    later changed re-send of them is seen too."""
    from integrations.db.store import StudyStore
    from integrations.dicom.file_meta import encode_file_meta
    from integrations.dicom.recovery import reconcile_spool
    from integrations.dicom.spool import Spool

    settings = node_settings()
    image = make_instance("crashed-1")
    path = write(image, settings.node.spool_dir / "unused")
    data = path.read_bytes()
    path.unlink()
    spool = Spool(settings.node.spool_dir, fsync=False)
    spooled = spool.write(
        image.StudyInstanceUID,
        image.SeriesInstanceUID,
        image.SOPInstanceUID,
        encode_file_meta(image.SOPClassUID, image.SOPInstanceUID, "1.2.840.10008.1.2.1", "X"),
        data[dataset_offset(data) :],
    )
    store = StudyStore(database)
    assert reconcile_spool(spool, store) == 1
    with database.connection() as conn:
        (row,) = conn.execute("SELECT content_sha256 FROM instances").fetchall()
    assert row["content_sha256"] == spooled.content_sha256 == file_content_sha256(spooled.path)
