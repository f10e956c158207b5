"""MSK, brain MRI and head CT analyzers with random weights: selection, order, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from models.analyzers.brain_mri_tumor import BrainMriTumorAnalyzer
from models.analyzers.head_ct_ich import HeadCtHemorrhageAnalyzer, hemorrhage_volume_ml
from models.analyzers.msk_fracture import MskFractureAnalyzer
from models.analyzers.volume import prepare_series
from models.labels import HEMORRHAGE_SUBTYPES as SUBTYPES
from models.package_registry import PackageRegistry
from models.phantoms.brain import brain_mri_study
from models.phantoms.head_ct import head_ct_study
from models.phantoms.msk import msk_study
from models.preprocess import decode_frames, sort_slices
from tests.fix_models import TinyFactory

ALWAYS, NEVER = 0.001, 0.999


def _analyzer(factory: TinyFactory, name: str, thresholds: dict[str, float] | None = None):
    path = factory(name, thresholds=thresholds)
    return PackageRegistry(path.parent, "cpu", allow_non_clinical=True).get(name)


def test_msk_scores_every_view_and_skips_unknown_body_parts(
    tiny_package_factory: TinyFactory,
) -> None:
    analyzer = _analyzer(tiny_package_factory, "msk-fracture", {"Fracture": ALWAYS})
    assert isinstance(analyzer, MskFractureAnalyzer)
    study = msk_study(3, True, body_part="WRIST", size=192)
    chest_like = msk_study(4, False, body_part="ANKLE", size=96).datasets[0]
    chest_like.BodyPartExamined = "CHEST"
    no_part = msk_study(5, False, body_part="LEG", size=96).datasets[1]
    no_part.BodyPartExamined = ""
    result = analyzer.analyze([*study.datasets, chest_like, no_part])
    assert result.status == "analysed"
    assert [entry["body_part"] for entry in result.extra["images"]] == ["WRIST", "WRIST"]
    assert all(entry["present"] for entry in result.extra["images"])
    (finding,) = result.findings
    assert finding.present and len(finding.images) == 2 and len(result.heatmaps) == 2
    reasons = " | ".join(item["reason"] for item in result.extra["skipped"])
    assert "body part CHEST is not one of" in reasons and "Body Part Examined is empty" in reasons


def test_series_are_ordered_by_position_not_instance_number() -> None:
    shuffled = brain_mri_study(2, True, slices=20, matrix=64, shuffle=True)
    numbers = [int(ds.InstanceNumber) for ds in shuffled.datasets]
    positions = [float(ds.ImagePositionPatient[2]) for ds in shuffled.datasets]
    assert numbers == sorted(numbers) and positions != sorted(positions)
    stack = sort_slices([frame for ds in shuffled.datasets for frame in decode_frames(ds)])
    ordered = [frame.position[2] for frame in stack.frames]  # type: ignore[index]
    assert ordered == sorted(positions)
    assert stack.spacing == pytest.approx(1.0)


def test_multiframe_enhanced_mr_equals_the_same_slices_as_single_frames() -> None:
    from models.demo.brain_mri_tumor import INPUT
    from models.package import InputSpec

    spec = InputSpec.model_validate(INPUT)
    single = prepare_series(brain_mri_study(6, True, slices=18, matrix=64).datasets, spec)
    multi_study = brain_mri_study(6, True, slices=18, matrix=64, multiframe=True, shuffle=True)
    assert len(multi_study.datasets) == 1 and multi_study.datasets[0].NumberOfFrames == 18
    multi = prepare_series(multi_study.datasets, spec)
    np.testing.assert_allclose(multi.inputs, single.inputs, atol=1e-6)
    assert multi.frames[0].reference.frame_number is not None


def test_brain_analyzer_reports_slices_and_skips_a_short_series(
    tiny_package_factory: TinyFactory,
) -> None:
    analyzer = _analyzer(tiny_package_factory, "brain-mri-tumor", {"Brain tumor": ALWAYS})
    assert isinstance(analyzer, BrainMriTumorAnalyzer)
    study = brain_mri_study(7, True, slices=40, matrix=96)
    short = brain_mri_study(8, False, slices=5, matrix=64).datasets
    result = analyzer.analyze([*study.datasets, *short])
    assert result.status == "analysed"
    (series,) = result.extra["series"]
    assert series["slices"] == 40 and len(series["slice_probabilities"]) == 40
    assert "5 slice(s); at least 16 needed" in result.extra["skipped"][0]["reason"]
    (finding,) = result.findings
    assert finding.present and 1 <= len(finding.images) <= 12 and len(result.heatmaps) == 3
    assert all(h.values.shape == (96, 96) for h in result.heatmaps)


def test_head_ct_refuses_contrast_localizer_and_missing_spacing(
    tiny_package_factory: TinyFactory,
) -> None:
    analyzer = _analyzer(tiny_package_factory, "head-ct-ich")
    assert isinstance(analyzer, HeadCtHemorrhageAnalyzer)
    contrast = head_ct_study(1, (), slices=6, matrix=64, contrast=True)
    result = analyzer.analyze(contrast.datasets)
    assert result.status == "not_analysable" and "contrast-enhanced" in (result.reason or "")
    with_localizer = head_ct_study(2, (), slices=6, matrix=64, with_localizer=True)
    result = analyzer.analyze(with_localizer.datasets)
    assert result.status == "analysed"
    assert "is a localizer" in result.extra["skipped"][0]["reason"]
    no_spacing = head_ct_study(3, (), slices=6, matrix=64)
    for ds in no_spacing.datasets:
        del ds.PixelSpacing
    result = analyzer.analyze(no_spacing.datasets)
    assert result.status == "not_analysable" and "no Pixel Spacing" in (result.reason or "")


def test_head_ct_findings_cover_types_mixed_and_volume(tiny_package_factory: TinyFactory) -> None:
    thresholds = dict.fromkeys(("Intracranial hemorrhage", *SUBTYPES), ALWAYS)
    thresholds["Mixed intracranial hemorrhage"] = ALWAYS
    analyzer = _analyzer(tiny_package_factory, "head-ct-ich", thresholds)
    study = head_ct_study(4, ("Subdural hemorrhage",), slices=12, matrix=96, around_bleed=True)
    result = analyzer.analyze(study.datasets)
    labels = [finding.label for finding in result.findings]
    assert labels[0] == "Intracranial hemorrhage" and labels[-1] == "Mixed intracranial hemorrhage"
    assert len(labels) == 7
    volume = result.findings[0].measurements[0]
    assert volume.unit.value == "mL" and volume.name.value == "118565006"
    assert volume.value > 0
    assert result.tier.value == "Critical"


def test_volume_estimate_counts_blood_not_bone_or_calcification() -> None:
    study = head_ct_study(9, ("Intraparenchymal hemorrhage",), slices=40, matrix=256)
    frames = sort_slices([f for ds in study.datasets for f in decode_frames(ds)]).frames
    hounsfield = np.stack([frame.values for frame in frames])
    flagged = np.ones(len(frames), dtype=bool)
    estimate = hemorrhage_volume_ml(hounsfield, flagged, frames[0].pixel_spacing, 4.0)  # type: ignore[arg-type]
    truth = study.measurements["hemorrhage_volume_ml"]
    assert truth > 5
    assert estimate == pytest.approx(truth, rel=0.25)
    normal = head_ct_study(10, (), slices=40, matrix=256)
    frames = sort_slices([f for ds in normal.datasets for f in decode_frames(ds)]).frames
    hounsfield = np.stack([frame.values for frame in frames])
    assert hemorrhage_volume_ml(hounsfield, flagged, frames[0].pixel_spacing, 4.0) < 0.5  # type: ignore[arg-type]
