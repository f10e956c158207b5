"""Result objects and prior comparison against a real PACS (Orthanc) and the real node.

Everything the PACS holds is checked through what it gives back: its REST API lists the
series, and the stored files are downloaded, verified with dciodvfy, rendered and read.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import io

import pytest
from pydicom import dcmread
from scipy import ndimage

from integrations.dicom.gsps import contour_layer_name
from integrations.dicom.priors import CurrentStudy, fetch_prior, latest_report
from integrations.dicom.render import render
from integrations.dicom.result_common import ResultKind, decode_dataset, encode_dataset
from integrations.dicom.result_objects import build_result_objects
from integrations.dicom.scu import DicomClient, Peer
from integrations.dicom.sr_reader import read_measurement_report
from integrations.settings import PriorsSettings, ResultsSettings
from models.interval_change import compare_with_prior, no_prior
from tests.dciodvfy import (
    PARAMETRIC_MAP_WARNINGS,
    assert_conformant,
)
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE, OrthancPeer
from tests.site import running_node
from tests.unit.results import synthetic

ALL_CARRIERS = ["sr", "gsps", "secondary_capture", "segmentation", "parametric_map"]
MODALITY_OF_KIND = {
    ResultKind.SR: "SR",
    ResultKind.GSPS: "PR",
    ResultKind.SECONDARY_CAPTURE: "OT",
    ResultKind.SEGMENTATION: "SEG",
    ResultKind.PARAMETRIC_MAP: "OT",
}


def pacs_client(orthanc: OrthancPeer, port: int | None = None) -> DicomClient:
    return DicomClient(
        Peer(
            ae_title=PACS_AE_TITLE,
            host="127.0.0.1",
            port=port or orthanc.dicom_port,
            calling_ae_title=NODE_AE_TITLE,
            timeout_seconds=10,
        )
    )


def upload(orthanc: OrthancPeer, *datasets) -> None:
    for dataset in datasets:
        orthanc.client.upload(encode_dataset(dataset))


def stored_files(orthanc: OrthancPeer, study_instance_uid: str) -> dict[str, bytes]:
    """SOP Instance UID -> the file Orthanc gives back."""
    files = {}
    for instance in orthanc.client.instances_of(study_instance_uid):
        data = orthanc.client.instance_file(instance["ID"])
        header = dcmread(io.BytesIO(data), stop_before_pixels=True)
        files[str(header.SOPInstanceUID)] = data
    return files


@pytest.fixture
def prior_settings(settings_factory, node_port):
    return settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": [PACS_AE_TITLE]},
        study={"quiet_seconds": 30},
    )


def test_results_are_new_series_of_the_study_and_reruns_do_not_duplicate(clean_orthanc):
    images, _ = synthetic.ct_series()
    analysis = synthetic.head_ct_analysis(images, synthetic.Lesion((40.0, 70.0), (9.0, 7.0)))
    upload(clean_orthanc, *images)
    study_uid = images[0].StudyInstanceUID
    before = clean_orthanc.client.series_of(study_uid)
    assert len(before) == 1
    objects = build_result_objects(analysis, images, profile=ResultsSettings(carriers=ALL_CARRIERS))
    codes = pacs_client(clean_orthanc).store(
        [item.dataset for item in objects], study_instance_uid=study_uid
    )
    assert codes == [0x0000] * len(objects)
    series = clean_orthanc.client.series_of(study_uid)
    assert len(series) == 1 + len(ResultKind)
    by_uid = {s["MainDicomTags"]["SeriesInstanceUID"]: s for s in series}
    for item in objects:
        stored = by_uid[item.series_instance_uid]
        assert stored["MainDicomTags"]["Modality"] == MODALITY_OF_KIND[item.kind]
    instances_before = len(clean_orthanc.client.instances_of(study_uid))
    # A rerun of the same generation sends the same UIDs: the PACS replaces, never duplicates.
    rerun = build_result_objects(analysis, images, profile=ResultsSettings(carriers=ALL_CARRIERS))
    pacs_client(clean_orthanc).store([item.dataset for item in rerun], study_instance_uid=study_uid)
    assert len(clean_orthanc.client.instances_of(study_uid)) == instances_before
    assert len(clean_orthanc.client.series_of(study_uid)) == len(series)


def test_objects_given_back_by_the_pacs_are_conformant_and_the_sr_matches(clean_orthanc):
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    image, _ = synthetic.chest_radiograph(lesion=lesion)
    analysis = synthetic.chest_analysis(image, lesion)
    upload(clean_orthanc, image)
    objects = build_result_objects(
        analysis, [image], profile=ResultsSettings(carriers=ALL_CARRIERS)
    )
    pacs_client(clean_orthanc).store([item.dataset for item in objects])
    files = stored_files(clean_orthanc, image.StudyInstanceUID)
    for item in objects:
        assert_conformant(files[item.sop_instance_uid], allowed_warnings=PARAMETRIC_MAP_WARNINGS)
    report = read_measurement_report(decode_dataset(files[objects.sr.sop_instance_uid]))
    assert report.tier == analysis.tier
    for written, finding in zip(report.findings, analysis.findings, strict=True):
        assert (written.label, written.code, written.present) == (
            finding.label,
            finding.code,
            finding.present,
        )
        assert written.probability == pytest.approx(finding.probability)


def test_overlay_fetched_from_the_pacs_lands_on_the_lesion(clean_orthanc):
    lesion = synthetic.Lesion((60.0, 190.0), (12.0, 20.0))
    image, mask = synthetic.chest_radiograph(lesion=lesion, photometric="MONOCHROME1")
    upload(clean_orthanc, image)
    objects = build_result_objects(
        synthetic.chest_analysis(image, lesion), [image], profile=ResultsSettings()
    )
    pacs_client(clean_orthanc).store([item.dataset for item in objects])
    files = stored_files(clean_orthanc, image.StudyInstanceUID)
    (state,) = objects.of_kind(ResultKind.GSPS)
    rendering = render(
        decode_dataset(files[image.SOPInstanceUID]), decode_dataset(files[state.sop_instance_uid])
    )
    outer = ndimage.binary_fill_holes(rendering.layers[contour_layer_name(0)])
    assert (outer & mask).sum() == mask.sum()
    assert outer.sum() < 4 * mask.sum()


@pytest.mark.parametrize(
    ("character_set", "name"),
    [("ISO_IR 100", "Müller^Jürgen"), ("ISO_IR 192", "Łukasz^Żółć"), ("ISO_IR 192", "山田^太郎")],
)
def test_non_ascii_patient_names_survive_the_pacs(clean_orthanc, character_set, name):
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    image, _ = synthetic.chest_radiograph(
        lesion=lesion, patient_name=name, character_set=character_set
    )
    upload(clean_orthanc, image)
    objects = build_result_objects(
        synthetic.chest_analysis(image, lesion), [image], profile=ResultsSettings()
    )
    pacs_client(clean_orthanc).store([item.dataset for item in objects])
    files = stored_files(clean_orthanc, image.StudyInstanceUID)
    for item in objects:
        assert str(decode_dataset(files[item.sop_instance_uid]).PatientName) == name
    for instance in clean_orthanc.client.instances_of(image.StudyInstanceUID):
        assert clean_orthanc.client.instance_tags(instance["ID"])["PatientName"] == name


def test_a_patient_with_two_studies_gets_an_interval_change(clean_orthanc, prior_settings):
    lesion = synthetic.Lesion((40.0, 70.0), (9.0, 7.0))
    earlier, _ = synthetic.ct_series(
        lesion=lesion, study_key="ct-2024", study_date="20240601", accession_number="ACC-2024"
    )
    older_mr, _ = synthetic.ct_series(
        lesion=lesion, study_key="mr-2024", study_date="20240901", accession_number="ACC-MR"
    )
    for image in older_mr:  # a later study, but of another modality: not the prior
        image.Modality = "MR"
    current, _ = synthetic.ct_series(lesion=lesion, study_key="ct-2025")
    earlier_analysis = synthetic.head_ct_analysis(earlier, lesion, volume_ml=10.0, diameter_mm=18.0)
    upload(clean_orthanc, *earlier, *older_mr, *current)
    client = pacs_client(clean_orthanc)
    earlier_objects = build_result_objects(earlier_analysis, earlier, profile=ResultsSettings())
    client.store([item.dataset for item in earlier_objects])

    current_analysis = synthetic.head_ct_analysis(current, lesion, volume_ml=14.0, diameter_mm=21.0)
    with running_node(prior_settings, close_studies=False) as site:
        fetched = fetch_prior(
            client,
            CurrentStudy.from_dataset(current[0]),
            prior_settings.priors,
            destination_ae_title=NODE_AE_TITLE,
        )
        assert fetched.available, fetched.reason
        assert fetched.prior.study_instance_uid == earlier[0].StudyInstanceUID
        assert fetched.prior.has_report
        arrived = site.store.instances(earlier[0].StudyInstanceUID)
        assert len(arrived) == fetched.moved == len(earlier) + len(earlier_objects)
        report = latest_report(
            (dcmread(instance.path) for instance in arrived), analyzer=current_analysis.analyzer
        )
    assert report is not None and report.sop_instance_uid == earlier_objects.sr.sop_instance_uid
    comparison = compare_with_prior(current_analysis, report.to_prior_study())
    changes = {change.quantity.meaning: change for change in comparison.changes}
    assert changes["Volume"].absolute_change == pytest.approx(4.0)
    assert changes["Volume"].percent_change == pytest.approx(40.0)
    assert changes["Diameter"].absolute_change == pytest.approx(3.0)
    assert comparison.prior_study_date == datetime.date(2024, 6, 1)
    assert comparison.prior_accession_number == "ACC-2024"

    objects = build_result_objects(
        current_analysis, current, profile=ResultsSettings(carriers=["sr"]), prior=comparison
    )
    client.store([item.dataset for item in objects])
    files = stored_files(clean_orthanc, current[0].StudyInstanceUID)
    stored = read_measurement_report(decode_dataset(files[objects.sr.sop_instance_uid]))
    assert "2024-06-01" in stored.prior_summary and "ACC-2024" in stored.prior_summary
    kinds = {(c.quantity.meaning, c.kind.value): c.value for c in stored.findings[0].changes}
    assert kinds[("Volume", "ICABS")] == pytest.approx(4.0)
    assert kinds[("Volume", "ICPRIOR")] == pytest.approx(10.0)
    # The same finding is tracked across both studies.
    assert stored.findings[0].tracking_uid == report.findings[0].tracking_uid


def test_a_pacs_refusing_c_move_gives_no_prior_available(clean_orthanc):
    lesion = synthetic.Lesion((40.0, 70.0), (9.0, 7.0))
    earlier, _ = synthetic.ct_series(lesion=lesion, study_key="ct-old", study_date="20240601")
    current, _ = synthetic.ct_series(lesion=lesion, study_key="ct-new")
    upload(clean_orthanc, *earlier, *current)
    fetched = fetch_prior(
        pacs_client(clean_orthanc),
        CurrentStudy.from_dataset(current[0]),
        PriorsSettings(),
        destination_ae_title="NOSUCHNODE",  # not a modality Orthanc knows: it refuses the move
    )
    assert fetched.search.available  # the prior was found...
    assert not fetched.available  # ...but never arrived
    assert fetched.reason.startswith("no prior available: PACS did not move the prior")
    analysis = synthetic.head_ct_analysis(current, lesion)
    comparison = no_prior(fetched.reason)
    objects = build_result_objects(
        analysis, current, profile=ResultsSettings(carriers=["sr"]), prior=comparison
    )
    assert read_measurement_report(objects.sr.dataset).prior_summary == fetched.reason


def test_a_pacs_that_does_not_answer_gives_no_prior_available(orthanc):
    from deployments.orthanc import free_port

    current, _ = synthetic.ct_series(study_key="ct-alone")
    fetched = fetch_prior(
        pacs_client(orthanc, port=free_port()),
        CurrentStudy.from_dataset(current[0]),
        PriorsSettings(),
        destination_ae_title=NODE_AE_TITLE,
    )
    assert not fetched.available
    assert fetched.reason.startswith("no prior available: PACS did not answer C-FIND")


def test_a_patient_without_priors_gets_no_prior_available(clean_orthanc):
    current, _ = synthetic.ct_series(study_key="ct-first", patient_id="NEWPATIENT")
    upload(clean_orthanc, *current)
    fetched = fetch_prior(
        pacs_client(clean_orthanc),
        CurrentStudy.from_dataset(current[0]),
        PriorsSettings(),
        destination_ae_title=NODE_AE_TITLE,
    )
    assert not fetched.available
    assert fetched.reason == "no prior available: no earlier study of this patient"
    assert dataclasses.asdict(fetched.search)["prior"] is None


@pytest.mark.parametrize(
    ("overwrite_instances", "kept"),
    [(None, "first"), (True, "second")],
    ids=["orthanc-defaults", "overwrite-instances-true"],
)
def test_a_changed_sr_under_a_known_uid_is_kept_first_unless_the_pacs_overwrites(
    clean_orthanc, start_orthanc, overwrite_instances, kept
):
    """Orthanc's default (like most archives) answers success to a second copy under a known
    SOP Instance UID and keeps the first: a result re-sent with changed content under the same
    UIDs never reaches the reader. Only an archive set to overwrite shows the second."""
    pacs = clean_orthanc if overwrite_instances is None else start_orthanc(overwrite_instances=True)
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    image, _ = synthetic.chest_radiograph(lesion=lesion)
    upload(pacs, image)
    first = build_result_objects(
        synthetic.chest_analysis(image, lesion), [image], profile=ResultsSettings(carriers=["sr"])
    ).sr.dataset
    second = copy.deepcopy(first)
    second.SeriesDescription = "changed content, same SOP Instance UID"
    client = pacs_client(pacs)
    assert client.store([first]) == [0x0000]
    assert client.store([second]) == [0x0000]  # success either way
    stored = decode_dataset(stored_files(pacs, image.StudyInstanceUID)[first.SOPInstanceUID])
    expected = first if kept == "first" else second
    assert stored.SeriesDescription == expected.SeriesDescription
