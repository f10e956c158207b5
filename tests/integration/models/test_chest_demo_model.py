"""The committed demo chest package: installed, verified, and measurably does its job.

Held-out studies use seeds the recipe never touched (training 1e6+, validation 2e6+, test
3e6+) and go through the whole DICOM path (phantom DICOM → analyzer → AnalysisResult).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.demo import ensure_demo_packages
from models.evaluation import roc_auc
from models.loading import read_manifest
from models.package import DEMO_NOTICE
from models.package_registry import PackageRegistry
from models.phantoms.chest import chest_xray_study

HELD_OUT = 9_100_000
PNEUMOTHORAX_MIN_AUC = 0.90
DISTRACTORS = ("Effusion", "Mass", "Consolidation", "Cardiomegaly", "Hernia", "Edema", "Nodule")


def test_demo_package_is_installed_marked_and_not_for_clinical_use(demo_models_dir: Path) -> None:
    manifest = read_manifest(demo_models_dir / "chest-xray")
    assert manifest.notice == DEMO_NOTICE
    assert DEMO_NOTICE in manifest.intended_use
    assert manifest.clinical_use is False and manifest.is_demo
    assert manifest.training["held_out"]["Pneumothorax"]["auc"] >= PNEUMOTHORAX_MIN_AUC


def test_ensure_is_idempotent_and_keeps_a_site_package(
    demo_models_dir: Path, tmp_path: Path
) -> None:
    first = ensure_demo_packages(tmp_path, ["chest-xray"], train_if_needed=False)
    stamp = (tmp_path / "chest-xray" / "weights.pt").stat().st_mtime_ns
    second = ensure_demo_packages(tmp_path, ["chest-xray"], train_if_needed=False)
    assert first == second
    assert (tmp_path / "chest-xray" / "weights.pt").stat().st_mtime_ns == stamp


def test_demo_chest_model_detects_generated_pneumothorax(demo_registry: PackageRegistry) -> None:
    analyzer = demo_registry.get("chest-xray")
    rng = np.random.default_rng(HELD_OUT)
    truth, scores = [], []
    for index in range(60):
        findings = {"Pneumothorax"} if index % 2 == 0 else set()
        if rng.random() < 0.5:  # other findings on both sides, so the contrast is not "anything"
            findings.add(str(rng.choice(DISTRACTORS)))
        study = chest_xray_study(
            HELD_OUT + index,
            findings,
            photometric="MONOCHROME1" if index % 5 == 0 else "MONOCHROME2",
            size=384,
        )
        result = analyzer.analyze(study.datasets)
        assert result.status == "analysed"
        probabilities = {finding.label: finding.probability for finding in result.findings}
        truth.append("Pneumothorax" in study.labels)
        scores.append(probabilities["Pneumothorax"])
    auc = roc_auc(np.array(truth), np.array(scores))
    assert auc >= PNEUMOTHORAX_MIN_AUC, f"pneumothorax AUC {auc:.3f}"


@pytest.mark.parametrize("flip", [0, 1000])
def test_tampered_demo_weights_are_refused(
    demo_models_dir: Path, tmp_path: Path, flip: int
) -> None:
    models = tmp_path / "models"
    ensure_demo_packages(models, ["chest-xray"], train_if_needed=False)
    weights = bytearray((models / "chest-xray" / "weights.pt").read_bytes())
    weights[flip] ^= 0x10
    (models / "chest-xray" / "weights.pt").write_bytes(bytes(weights))
    registry = PackageRegistry(models, "cpu", allow_non_clinical=True)
    with pytest.raises(Exception) as refused:
        registry.require(["chest-xray"])
    assert "chest-xray" in str(refused.value) and "SHA-256" in str(refused.value)
