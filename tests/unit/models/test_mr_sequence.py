"""Brain MR series chosen by sequence from vendor headers, 2D stacks and Enhanced MR alike."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom import Dataset

from models.analyzers.brain_mri_tumor import BrainMriTumorAnalyzer
from models.analyzers.mr_sequence import MrSequence, classify_series, rank_series
from models.package_registry import PackageRegistry
from models.phantoms.vendor_mr import series_uid_of, vendor_brain_mr_study
from models.preprocess import group_by_series
from tests.fix_models import TinyFactory


def _ranking(vendor, multiframe=False):
    study = vendor_brain_mr_study(3, vendor, multiframe=multiframe)
    ranked = rank_series(group_by_series(study.datasets))
    names = {series_uid_of(3, vendor, name): name for name in _names(vendor)}
    return [(names[entry.series_instance_uid], entry.call.sequence) for entry in ranked]


def _names(vendor):
    from models.phantoms.vendor_mr import PROFILES

    return [spec.name for spec in PROFILES[vendor]]


@pytest.mark.parametrize("multiframe", [False, True])
def test_siemens_order_is_flair_t2_t1_post_t1_and_never_scout_or_diffusion(multiframe):
    assert _ranking("siemens", multiframe) == [
        ("flair", MrSequence.FLAIR),
        ("t2", MrSequence.T2),
        ("t1_post", MrSequence.T1_POST),
        ("t1", MrSequence.T1),
        ("localizer", MrSequence.EXCLUDED),
        ("dwi", MrSequence.EXCLUDED),
    ]


@pytest.mark.parametrize("multiframe", [False, True])
def test_philips_flair_and_t2_are_told_apart_by_timings_alone(multiframe):
    # "AX 5mm" and "AX TSE 5mm" name no sequence; Enhanced MR keeps the timings in the
    # functional groups, classic MR at the top level.
    assert _ranking("philips", multiframe)[:3] == [
        ("flair", MrSequence.FLAIR),
        ("t2", MrSequence.T2),
        ("t1_post", MrSequence.T1_POST),
    ]


def test_ge_t1_flair_is_t1_and_swan_is_never_read():
    ranking = dict(_ranking("ge"))
    assert ranking["sag_t1"] is MrSequence.T1 and ranking["swi"] is MrSequence.EXCLUDED
    assert _ranking("ge")[0] == ("t2", MrSequence.T2)


def _mr(**headers) -> Dataset:
    ds = Dataset()
    for keyword, value in headers.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"SeriesDescription": "T1 SE axial pre"}, MrSequence.T1),
        ({"SeriesDescription": "T1 SE axial pre", "ContrastBolusAgent": "Gd"}, MrSequence.T1),
        ({"SeriesDescription": "T1 SE mit KM"}, MrSequence.T1_POST),
        ({"SeriesDescription": "T1 TSE tra MDC"}, MrSequence.T1_POST),
        ({"SeriesDescription": "Ax T2* GRE"}, MrSequence.EXCLUDED),
        ({"SeriesDescription": "STIR cor"}, MrSequence.EXCLUDED),
        ({"ScanningSequence": "IR", "InversionTime": 150.0}, MrSequence.EXCLUDED),
        ({"SequenceName": "*tir2d1_16", "InversionTime": 2400.0}, MrSequence.FLAIR),
        ({"SeriesDescription": "MPRAGE", "ContrastBolusAgent": "Dotarem"}, MrSequence.T1_POST),
        ({"SeriesDescription": "serie 4"}, MrSequence.UNKNOWN),
        ({"ImageType": ["DERIVED", "PRIMARY", "ADC"]}, MrSequence.EXCLUDED),
    ],
)
def test_classification_from_single_headers(headers, expected):
    assert classify_series(_mr(**headers)).sequence is expected


def test_brain_analyzer_reads_the_flair_of_a_20_slice_5mm_2d_study(
    tiny_package_factory: TinyFactory,
) -> None:
    path = tiny_package_factory("brain-mri-tumor")
    analyzer = PackageRegistry(path.parent, "cpu", allow_non_clinical=True).get("brain-mri-tumor")
    assert isinstance(analyzer, BrainMriTumorAnalyzer)
    for multiframe in (False, True):
        study = vendor_brain_mr_study(5, "siemens", multiframe=multiframe, tumour=True)
        result = analyzer.analyze(study.datasets)
        assert result.status == "analysed", result.reason
        (series,) = result.extra["series"]
        assert series["series_instance_uid"] == series_uid_of(5, "siemens", "flair")
        assert series["sequence"] == "FLAIR" and series["slices"] == 20
        assert series["slice_spacing_mm"] == pytest.approx(5.0)
        reasons = " | ".join(item["reason"] for item in result.extra["skipped"])
        assert "localizer" in reasons and "diffusion" in reasons
        read = {ref.series_instance_uid for ref in result.analysed_images}
        assert read == {series_uid_of(5, "siemens", "flair")}


def test_brain_analyzer_falls_back_when_the_preferred_series_cannot_be_used(
    tiny_package_factory: TinyFactory,
) -> None:
    path = tiny_package_factory("brain-mri-tumor")
    analyzer = PackageRegistry(path.parent, "cpu", allow_non_clinical=True).get("brain-mri-tumor")
    study = vendor_brain_mr_study(6, "ge")
    t2 = series_uid_of(6, "ge", "t2")
    kept = [ds for ds in study.datasets if ds.SeriesInstanceUID != t2 or ds.InstanceNumber < 5]
    result = analyzer.analyze(kept)
    assert result.status == "analysed"
    assert result.extra["series"][0]["sequence"] == "T1 post-contrast"


def _post_contrast_only(tiny_package_factory: TinyFactory) -> BrainMriTumorAnalyzer:
    path = tiny_package_factory(
        "brain-mri-tumor", edit=lambda manifest: manifest.update(sequences=["T1 post-contrast"])
    )
    analyzer = PackageRegistry(path.parent, "cpu", allow_non_clinical=True).get("brain-mri-tumor")
    assert isinstance(analyzer, BrainMriTumorAnalyzer)
    return analyzer


@pytest.mark.parametrize("vendor", ["siemens", "philips", "ge"])
def test_a_package_trained_on_post_contrast_t1_reads_only_that_series(
    tiny_package_factory: TinyFactory, vendor
) -> None:
    analyzer = _post_contrast_only(tiny_package_factory)
    study = vendor_brain_mr_study(7, vendor, tumour=True)
    result = analyzer.analyze(study.datasets)
    assert result.status == "analysed", result.reason
    (series,) = result.extra["series"]
    assert series["series_instance_uid"] == series_uid_of(7, vendor, "t1_post")
    assert series["sequence"] == "T1 post-contrast"
    assert result.extra["selection"] == "by sequence: T1 post-contrast (declared by the package)"
    read = {ref.series_instance_uid for ref in result.analysed_images}
    assert read == {series_uid_of(7, vendor, "t1_post")}
    reasons = " | ".join(item["reason"] for item in result.extra["skipped"])
    assert "T2 is not a sequence this model was trained on (T1 post-contrast)" in reasons


@pytest.mark.parametrize("multiframe", [False, True])
def test_a_flair_only_study_is_not_analysable_for_a_post_contrast_t1_package(
    tiny_package_factory: TinyFactory, tmp_path: Path, multiframe
) -> None:
    analyzer = _post_contrast_only(tiny_package_factory)
    study = vendor_brain_mr_study(8, "siemens", tumour=True, multiframe=multiframe)
    flair = series_uid_of(8, "siemens", "flair")
    only_flair = [ds for ds in study.datasets if ds.SeriesInstanceUID == flair]
    result = analyzer.analyze(only_flair)
    assert result.status == "not_analysable"
    assert not result.findings
    assert "FLAIR is not a sequence this model was trained on (T1 post-contrast)" in result.reason
    # the same series is read by a package that declares nothing (the default order)
    path = tiny_package_factory("brain-mri-tumor", directory=tmp_path / "declares-nothing")
    default = PackageRegistry(path.parent, "cpu", allow_non_clinical=True).get("brain-mri-tumor")
    assert default.analyze(only_flair).status == "analysed"
