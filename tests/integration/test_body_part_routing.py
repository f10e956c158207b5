"""Vendor brain MR with no BodyPartExamined, routed through the real node by what it does carry."""

from __future__ import annotations

from pydicom.sequence import Sequence

from models.phantoms.dicom import code_item, sequence_item
from models.phantoms.vendor_mr import series_uid_of, vendor_brain_mr_study
from tests.dicom_samples import write
from tests.fix_dcmtk import storescu
from tests.fix_orthanc import NODE_AE_TITLE
from tests.integration.test_assembly import wait_for
from tests.site import running_node

BRAIN_RULE = {
    "name": "brain-mri",
    "modality": ["MR"],
    "body_part": ["HEAD", "BRAIN"],
    "analyzers": ["brain-mri-tumor"],
}
CHEST_RULE = {
    "name": "chest",
    "modality": ["CR", "DX"],
    "body_part": ["CHEST"],
    "analyzers": ["chest-xray"],
}


def test_german_and_french_mr_without_body_part_reach_the_brain_analyzer(
    settings_factory, node_port, tmp_path, dcmtk_tools
):
    german = vendor_brain_mr_study(11, "siemens", matrix=32)
    french = vendor_brain_mr_study(12, "ge", matrix=32, multiframe=True)
    # The French study's Enhanced MR T2 names its region only in the shared Frame Anatomy group.
    t2 = next(ds for ds in french.datasets if ds.SeriesInstanceUID == series_uid_of(12, "ge", "t2"))
    t2.SharedFunctionalGroupsSequence[0].FrameAnatomySequence = Sequence(
        [
            sequence_item(
                AnatomicRegionSequence=Sequence([code_item("12738006", "SCT", "Brain")]),
                FrameLaterality="U",
            )
        ]
    )
    assert all("BodyPartExamined" not in ds for ds in [*german.datasets, *french.datasets])
    files = [write(ds, tmp_path / "in") for ds in [*german.datasets, *french.datasets]]
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": ["MODALITY"]},
        study={"quiet_seconds": 0.5, "poll_seconds": 0.05},
        routing={"rules": [CHEST_RULE, BRAIN_RULE]},
    )
    with running_node(settings) as site:
        result = storescu("MODALITY", NODE_AE_TITLE, site.port, files)
        assert result.returncode == 0, result.stderr
        routed = {}
        for study in (german, french):
            uid = study.study_instance_uid
            routed[uid] = wait_for(
                lambda uid=uid: (s := site.store.study(uid)).state == "queued" and s
            )
        with site.database.connection() as conn:
            stations = {
                row["station_name"]
                for row in conn.execute("SELECT station_name FROM series").fetchall()
            }
    assert stations == {"AWP45123", "GEMR3T"}

    route = routed[german.study_instance_uid].route
    flair = series_uid_of(11, "siemens", "flair")
    assert flair in route.analyzers["brain-mri-tumor"]
    assert set(route.analyzers) == {"brain-mri-tumor"}
    assert route.body_parts[flair] == "body part HEAD from StudyDescription keyword 'schädel'"

    route = routed[french.study_instance_uid].route
    t2_uid = series_uid_of(12, "ge", "t2")
    assert t2_uid in route.analyzers["brain-mri-tumor"]
    assert route.body_parts[t2_uid] == (
        "body part BRAIN from AnatomicRegionSequence code SCT:12738006 (Brain)"
    )
    t1_post = series_uid_of(12, "ge", "t1_post")
    assert route.body_parts[t1_post] == (
        "body part BRAIN from StudyDescription keyword 'cérébrale'"
    )
