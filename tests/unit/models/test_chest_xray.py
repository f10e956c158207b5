"""Chest X-ray analyzer with random weights: selection, refusals, result shape, heatmaps."""

from __future__ import annotations

import numpy as np
import pytest

from models.analyzers.chest_xray import ChestXrayAnalyzer, view_of
from models.labels import CHEST_LABELS
from models.package_registry import PackageRegistry
from models.phantoms.chest import chest_xray_study
from models.results import UrgencyTier
from tests.fix_models import TinyFactory

ALWAYS = 0.001  # threshold every probability passes
NEVER = 0.999


@pytest.fixture
def analyzer(tiny_package_factory: TinyFactory) -> ChestXrayAnalyzer:
    thresholds = dict.fromkeys(CHEST_LABELS, NEVER)
    thresholds.update({"Pneumothorax": ALWAYS, "Tension Pneumothorax": ALWAYS})
    path = tiny_package_factory("chest-xray", thresholds=thresholds)
    registry = PackageRegistry(path.parent, "cpu", allow_non_clinical=True)
    result = registry.get("chest-xray")
    assert isinstance(result, ChestXrayAnalyzer)
    return result


def test_one_finding_per_label_with_codes_tiers_and_heatmaps(analyzer: ChestXrayAnalyzer) -> None:
    study = chest_xray_study(1, ("Pneumothorax",), size=256)
    result = analyzer.analyze(study.datasets)
    assert result.status == "analysed" and result.reason is None
    assert [f.label for f in result.findings] == [label.name for label in analyzer.manifest.labels]
    present = {f.label for f in result.findings if f.present}
    assert present == {"Pneumothorax", "Tension Pneumothorax"}
    assert result.tier is UrgencyTier.CRITICAL
    assert (
        result.primary_finding is not None
        and result.primary_finding.label == "Tension Pneumothorax"
    )
    assert {h.label for h in result.heatmaps} == present
    image = study.datasets[0]
    for heatmap in result.heatmaps:
        assert heatmap.values.shape == (image.Rows, image.Columns)
        assert heatmap.values.dtype == np.float32
        assert float(heatmap.values.min()) >= 0.0 and float(heatmap.values.max()) <= 1.0
        assert heatmap.image.sop_instance_uid == image.SOPInstanceUID
    assert result.analysed_images[0].sop_instance_uid == image.SOPInstanceUID
    assert result.inference_seconds > 0
    pneumothorax = next(f for f in result.findings if f.label == "Pneumothorax")
    assert pneumothorax.code.value == "36118008" and pneumothorax.threshold == ALWAYS


def test_lateral_view_is_skipped_with_a_reason(analyzer: ChestXrayAnalyzer) -> None:
    study = chest_xray_study(2, (), views=("PA", "LATERAL"), size=128)
    result = analyzer.analyze(study.datasets)
    assert result.status == "analysed"
    assert [ref.sop_instance_uid for ref in result.analysed_images] == [
        study.datasets[0].SOPInstanceUID
    ]
    (skipped,) = result.extra["skipped"]
    assert skipped["image"]["sop_instance_uid"] == study.datasets[1].SOPInstanceUID
    assert "lateral view" in skipped["reason"]


def test_only_lateral_is_not_analysable_with_the_reason(analyzer: ChestXrayAnalyzer) -> None:
    study = chest_xray_study(3, (), views=("LATERAL",), size=128)
    result = analyzer.analyze(study.datasets)
    assert result.status == "not_analysable"
    assert "no frontal chest radiograph" in (result.reason or "")
    assert "lateral view (View Position LL)" in (result.reason or "")
    assert result.findings == () and result.heatmaps == ()


def test_wrong_modality_and_colour_images_are_not_analysable(analyzer: ChestXrayAnalyzer) -> None:
    ct = chest_xray_study(1, (), size=64).datasets[0]
    ct.Modality = "CT"
    assert "modality CT is not one of CR, DX" in (analyzer.analyze([ct]).reason or "")
    colour = chest_xray_study(4, (), size=64).datasets[0]
    colour.PhotometricInterpretation = "RGB"
    result = analyzer.analyze([colour])
    assert result.status == "not_analysable" and "photometric interpretation RGB" in (
        result.reason or ""
    )


def test_storage_variants_give_the_same_answer(analyzer: ChestXrayAnalyzer) -> None:
    """MONOCHROME1, a VOI LUT and JPEG 2000 are undone by preprocessing, not learnt around."""

    def probabilities(**options: object) -> np.ndarray:
        study = chest_xray_study(5, ("Effusion",), size=256, **options)  # type: ignore[arg-type]
        result = analyzer.analyze(study.datasets)
        return np.array([f.probability for f in result.findings])

    reference = probabilities()
    np.testing.assert_allclose(probabilities(photometric="MONOCHROME1"), reference, atol=0.02)
    np.testing.assert_allclose(probabilities(transfer_syntax="jpeg2000"), reference, atol=1e-5)
    np.testing.assert_allclose(probabilities(modality="CR"), reference, atol=1e-5)


def test_view_is_read_from_view_code_sequence_when_view_position_is_empty() -> None:
    dataset = chest_xray_study(6, (), views=("LATERAL",), size=64).datasets[0]
    dataset.ViewPosition = ""
    assert view_of(dataset) == "LATERAL"
