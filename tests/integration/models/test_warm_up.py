"""Warming a model up at worker start (one blank pass, inference and Grad-CAM) leaves it as
it was: every demo package warms up, and a warmed-up analyzer finds what a cold one finds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.package_registry import PackageRegistry
from models.phantoms.chest import chest_xray_study


def test_every_demo_package_warms_up(demo_models_dir: Path) -> None:
    registry = PackageRegistry(demo_models_dir, "cpu", allow_non_clinical=True)
    names = registry.available()
    assert len(names) >= 6
    for name in names:
        registry.get(name).warm_up()


def test_a_warmed_up_analyzer_gives_the_same_findings_and_heatmaps(demo_models_dir: Path) -> None:
    study = chest_xray_study(9_300_001, ["Pneumothorax"], size=384)
    cold = PackageRegistry(demo_models_dir, "cpu", allow_non_clinical=True).get("chest-xray")
    warm = PackageRegistry(demo_models_dir, "cpu", allow_non_clinical=True).get("chest-xray")
    warm.warm_up()
    expected, found = cold.analyze(study.datasets), warm.analyze(study.datasets)
    assert found.status == expected.status == "analysed"
    assert [(f.label, round(f.probability, 6)) for f in found.findings] == [
        (f.label, round(f.probability, 6)) for f in expected.findings
    ]
    assert found.findings and found.heatmaps
    assert [h.label for h in found.heatmaps] == [h.label for h in expected.heatmaps]
    for ours, theirs in zip(found.heatmaps, expected.heatmaps, strict=True):
        assert np.allclose(ours.values, theirs.values, atol=1e-5)
