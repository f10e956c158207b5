"""The committed stroke and dissection demo packages on held-out generated studies.

Held-out seeds (9_7xx_xxx for CT stroke, 9_75x_xxx for MR stroke, 9_8xx_xxx for CTA) are never
used by the recipes. Stated targets: type A and type B dissections found and typed, normal
aortas (of every diameter) negative, the maximum diameter within 4 mm; strokes found with
their volume within 35 % (CT) / 25 % (MR) of the drawn volume, normal heads negative; a
Grad-CAM heatmap for every present finding.
"""

from __future__ import annotations

import pytest

from models.labels import (
    AORTIC_DISSECTION,
    ISCHEMIC_STROKE,
    STANFORD_TYPE_A,
    STANFORD_TYPE_B,
)
from models.package_registry import PackageRegistry
from models.phantoms.aorta import cta_aorta_study
from models.phantoms.stroke import brain_mri_stroke_study, head_ct_stroke_study
from models.results import AnalysisResult, Finding


def by_label(result: AnalysisResult) -> dict[str, Finding]:
    assert result.status == "analysed", result.reason
    return {finding.label: finding for finding in result.findings}


def measurement(finding: Finding, meaning: str) -> float:
    (value,) = [m.value for m in finding.measurements if m.name.meaning == meaning]
    return value


@pytest.mark.parametrize("seed", range(3))
def test_dissection_found_typed_and_measured(demo_registry: PackageRegistry, seed: int) -> None:
    analyzer = demo_registry.get("cta-aortic-dissection")
    for stanford in ("A", "B", None):
        study = cta_aorta_study(9_800_000 + seed, stanford)
        findings = by_label(analyzer.analyze(study.datasets))
        result_present = {name for name, finding in findings.items() if finding.present}
        expected = {
            "A": {AORTIC_DISSECTION, STANFORD_TYPE_A},
            "B": {AORTIC_DISSECTION, STANFORD_TYPE_B},
            None: set(),
        }[stanford]
        assert result_present == expected, (seed, stanford, findings)
        diameter = measurement(findings[AORTIC_DISSECTION], "Diameter")
        assert abs(diameter - study.measurements["max_aortic_diameter_mm"]) <= 4.0


def test_dissection_heatmaps_and_not_a_head(demo_registry: PackageRegistry) -> None:
    analyzer = demo_registry.get("cta-aortic-dissection")
    result = analyzer.analyze(cta_aorta_study(9_810_000, "B").datasets)
    assert {h.label for h in result.heatmaps} >= {AORTIC_DISSECTION, STANFORD_TYPE_B}
    head = head_ct_stroke_study(9_810_001, False, slices=12, matrix=128)
    refused = analyzer.analyze(head.datasets)
    assert refused.status == "not_analysable" and "body part HEAD" in (refused.reason or "")


@pytest.mark.parametrize("seed", range(3))
def test_head_ct_stroke_found_with_volume(demo_registry: PackageRegistry, seed: int) -> None:
    analyzer = demo_registry.get("head-ct-stroke")
    study = head_ct_stroke_study(9_700_000 + seed, True)
    result = analyzer.analyze(study.datasets)
    stroke = by_label(result)[ISCHEMIC_STROKE]
    assert stroke.present and stroke.tier.value == "Critical"
    truth = study.measurements["infarct_volume_ml"]
    assert measurement(stroke, "Volume") == pytest.approx(truth, rel=0.35)
    assert measurement(stroke, stroke.measurements[1].name.meaning) < 10  # ASPECTS
    side = "left" if study.measurements["side"] > 0 else "right"
    assert result.extra["aspects"]["scores"][side] < 10
    assert any(h.label == ISCHEMIC_STROKE for h in result.heatmaps)
    normal = by_label(analyzer.analyze(head_ct_stroke_study(9_710_000 + seed, False).datasets))
    assert not any(finding.present for finding in normal.values()), normal


@pytest.mark.parametrize("seed", range(3))
def test_mri_stroke_found_with_volume(demo_registry: PackageRegistry, seed: int) -> None:
    analyzer = demo_registry.get("brain-mri-stroke")
    tag = ("standard", "siemens", "ge")[seed]
    study = brain_mri_stroke_study(9_750_000 + seed, True, b_value_tag=tag)
    result = analyzer.analyze(study.datasets)
    stroke = by_label(result)[ISCHEMIC_STROKE]
    assert stroke.present, result.extra
    assert measurement(stroke, "Volume") == pytest.approx(
        study.measurements["infarct_volume_ml"], rel=0.25
    )
    assert result.extra["series"][0]["b_value"] == 1000.0
    assert any(h.label == ISCHEMIC_STROKE for h in result.heatmaps)
    normal = by_label(analyzer.analyze(brain_mri_stroke_study(9_760_000 + seed, False).datasets))
    assert not normal[ISCHEMIC_STROKE].present


def test_mri_stroke_without_adc_is_not_analysable(demo_registry: PackageRegistry) -> None:
    analyzer = demo_registry.get("brain-mri-stroke")
    result = analyzer.analyze(brain_mri_stroke_study(9_770_000, True, adc=False).datasets)
    assert result.status == "not_analysable" and "ADC map" in (result.reason or "")
