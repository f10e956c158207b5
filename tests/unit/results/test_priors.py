"""Prior selection policy: look-back, modality, body part, newest first; and picking the SR."""

from __future__ import annotations

import datetime

import pytest
from pydicom import Dataset

from integrations.dicom.priors import (
    CurrentStudy,
    PriorCandidate,
    candidate_from_match,
    choose_prior,
    exclusion,
    latest_report,
    series_query,
    study_query,
    with_series,
)
from integrations.dicom.result_common import decode_dataset, encode_dataset
from integrations.dicom.sr import build_measurement_report
from integrations.settings import PriorsSettings
from tests.unit.results import synthetic

CURRENT = CurrentStudy(
    study_instance_uid="1.2.3.100",
    patient_id="PAT001",
    study_date=datetime.date(2025, 1, 2),
    study_time="101500",
    modality="CT",
    body_part="HEAD",
)
SETTINGS = PriorsSettings(lookback_days=365)


def candidate(uid: str, date: str, modalities=("CT",), body_parts=("HEAD",), time="090000"):
    return PriorCandidate(
        study_instance_uid=uid,
        study_date=datetime.datetime.strptime(date, "%Y%m%d").date(),
        study_time=time,
        modalities=tuple(modalities),
        body_parts=tuple(body_parts),
    )


def test_study_query_asks_for_the_patient_within_the_look_back_and_the_modality():
    query = study_query(CURRENT, SETTINGS)
    assert query.QueryRetrieveLevel == "STUDY"
    assert query.PatientID == "PAT001"
    assert query.StudyDate == "20240103-20250102"
    assert query.ModalitiesInStudy == "CT"
    for key in ("StudyInstanceUID", "AccessionNumber", "StudyTime"):
        assert key in query and query[key].value in ("", None)
    assert series_query("1.2.3").QueryRetrieveLevel == "SERIES"
    with pytest.raises(ValueError, match="patient_id"):
        study_query(CurrentStudy("1.2.3", "", None, "CT"), SETTINGS)


@pytest.mark.parametrize(
    ("prior", "reason"),
    [
        (candidate("1.2.3.100", "20240601"), "the current study itself"),
        (candidate("1.2.3.1", "20250103"), "later than the current study"),
        (candidate("1.2.3.1", "20250102", time="120000"), "not earlier than the current study"),
        (candidate("1.2.3.1", "20231231"), "older than the look-back"),
        (candidate("1.2.3.1", "20240601", modalities=("MR",)), "no CT series"),
        (candidate("1.2.3.1", "20240601", body_parts=("CHEST",)), "not HEAD"),
        (candidate("1.2.3.1", "20240601"), None),
        (candidate("1.2.3.1", "20250102", time="080000"), None),  # earlier the same day
        (candidate("1.2.3.1", "20240601", body_parts=()), None),  # body part unknown
    ],
)
def test_exclusion_reasons(prior, reason):
    assert exclusion(CURRENT, prior, SETTINGS) == reason


def test_body_part_is_ignored_when_the_site_says_so():
    chest = candidate("1.2.3.1", "20240601", body_parts=("CHEST",))
    assert exclusion(CURRENT, chest, PriorsSettings(same_body_part=False)) is None


def test_the_newest_eligible_study_is_the_prior():
    search = choose_prior(
        CURRENT,
        [
            candidate("1.2.3.1", "20240301"),
            candidate("1.2.3.2", "20241001", modalities=("MR",)),
            candidate("1.2.3.3", "20240901"),
            candidate("1.2.3.4", "20230101"),
        ],
        SETTINGS,
    )
    assert search.available and search.prior.study_instance_uid == "1.2.3.3"
    assert search.candidates == 4
    none = choose_prior(CURRENT, [candidate("1.2.3.2", "20241001", modalities=("MR",))], SETTINGS)
    assert (
        not none.available
        and none.reason == "no prior available: none of 1 earlier studies matches"
    )
    assert choose_prior(CURRENT, [], SETTINGS).reason == (
        "no prior available: no earlier study of this patient"
    )


def test_matches_become_candidates_with_their_series():
    match = Dataset()
    match.StudyInstanceUID = "1.2.3.7"
    match.StudyDate = "20240601"
    match.AccessionNumber = "ACC7"
    match.ModalitiesInStudy = ["CT", "SR"]
    prior = candidate_from_match(match)
    assert prior.modalities == ("CT", "SR") and prior.accession_number == "ACC7"
    series = []
    for uid, modality, body_part in (
        ("1.9.1", "CT", "HEAD"),
        ("1.9.2", "SR", ""),
        ("1.9.3", "PR", ""),
    ):
        item = Dataset()
        item.SeriesInstanceUID, item.Modality, item.BodyPartExamined = uid, modality, body_part
        series.append(item)
    detailed = with_series(prior, series)
    assert detailed.body_parts == ("HEAD",)
    assert detailed.report_series == ("1.9.2",) and detailed.has_report
    assert set(detailed.modalities) == {"CT", "SR", "PR"}
    assert candidate_from_match(Dataset()) is None


def test_current_study_from_an_image(head_ct):
    images, _, _, _ = head_ct
    current = CurrentStudy.from_dataset(images[0])
    assert (current.patient_id, current.modality, current.body_part) == ("PAT001", "CT", "HEAD")
    assert current.study_date == datetime.date(2025, 1, 2)


def test_latest_report_picks_the_newest_sr_of_the_analyzer(head_ct, profile):
    images, _, _, analysis = head_ct
    older = build_measurement_report(
        analysis, images, profile=profile, now=datetime.datetime(2025, 1, 2, 10)
    )
    newer = build_measurement_report(
        analysis, images, profile=profile, generation=2, now=datetime.datetime(2025, 1, 3, 9)
    )
    other_image, _ = synthetic.chest_radiograph()
    other_lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    other_analyzer = build_measurement_report(
        synthetic.chest_analysis(other_image, other_lesion), [other_image], profile=profile
    )
    datasets = [decode_dataset(encode_dataset(d)) for d in (newer, other_analyzer, older)]
    datasets.append(images[0])  # an image among the moved instances is ignored
    report = latest_report(datasets, analyzer=analysis.analyzer)
    assert report.sop_instance_uid == newer.SOPInstanceUID
    assert latest_report(datasets, analyzer="nobody") is None
