"""The committed demo packages on held-out generated studies, through the whole DICOM path.

Held-out seeds (9_xxx_xxx) are never used by the recipes (1e6, 2e6 and 3e6 ranges). Stated
targets: fracture study AUC >= 0.85, brain tumour study AUC >= 0.90, intracranial
haemorrhage study AUC >= 0.90, haemorrhage volume within 35 % of the drawn volume, and the
Grad-CAM peak on the lesion for >= 90 % of true-positive heatmaps across all four analyzers
(pointing game: inside the mask or within one feature-map cell of it; the strict inside-the-
mask share is printed beside it).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from scipy import ndimage

from models.demo.common import FEATURE_CELLS
from models.evaluation import roc_auc
from models.labels import CHEST_FOCAL_LABELS as CHEST_FOCAL
from models.labels import HEMORRHAGE_SUBTYPES as SUBTYPES
from models.package_registry import PackageRegistry
from models.phantoms.base import PhantomStudy
from models.phantoms.brain import brain_mri_study
from models.phantoms.chest import chest_xray_study
from models.phantoms.head_ct import head_ct_study
from models.phantoms.msk import msk_study
from models.results import AnalysisResult

LOCALISATION: dict[str, list[tuple[bool, bool]]] = defaultdict(list)  # (strict, within a cell)


def record_localisation(
    study: PhantomStudy, result: AnalysisResult, labels: tuple[str, ...]
) -> None:
    """Where each true-positive heatmap peaks relative to the lesion mask of its image.

    Strict: the peak pixel is inside the mask. Pointing game (Zhang et al., ECCV 2016, which
    allows 15 px at 224 px): the peak is within one feature-map cell (1/16 of the field) of
    the mask, the resolution at which Grad-CAM can place anything.
    """
    for heatmap in result.heatmaps:
        if heatmap.label not in labels or heatmap.label not in study.labels:
            continue
        mask = study.mask(heatmap.label, heatmap.image.sop_instance_uid, heatmap.image.frame_number)
        if mask is None or not mask.any():
            continue  # the image does not show the lesion: not a true positive to localise
        assert mask.shape == heatmap.values.shape
        peak = np.unravel_index(int(np.argmax(heatmap.values)), heatmap.values.shape)
        distance = float(ndimage.distance_transform_edt(~mask)[peak])
        cell = min(mask.shape) / FEATURE_CELLS
        LOCALISATION[study.kind].append((distance == 0.0, distance <= cell))


def test_chest_focal_findings_localise(demo_registry: PackageRegistry) -> None:
    analyzer = demo_registry.get("chest-xray")
    rng = np.random.default_rng(9_200_000)
    for index in range(40):
        findings = {str(rng.choice(CHEST_FOCAL))}
        study = chest_xray_study(9_200_000 + index, findings, size=384)
        record_localisation(study, analyzer.analyze(study.datasets), CHEST_FOCAL)
    assert len(LOCALISATION["chest-xray"]) >= 20


def test_msk_demo_detects_fractures(demo_registry: PackageRegistry) -> None:
    analyzer = demo_registry.get("msk-fracture")
    truth, scores = [], []
    for index in range(36):
        study = msk_study(9_400_000 + index, index % 2 == 0, size=320)
        result = analyzer.analyze(study.datasets)
        assert result.status == "analysed" and len(result.extra["images"]) == 2
        truth.append(index % 2 == 0)
        scores.append(result.findings[0].probability)
        record_localisation(study, result, ("Fracture",))
    auc = roc_auc(np.array(truth), np.array(scores))
    assert auc >= 0.85, f"fracture AUC {auc:.3f}"


def test_brain_demo_detects_tumours(demo_registry: PackageRegistry) -> None:
    analyzer = demo_registry.get("brain-mri-tumor")
    rng = np.random.default_rng(9_500_000)
    truth, scores = [], []
    for index in range(14):
        tumour = index % 2 == 0
        study = brain_mri_study(
            9_500_000 + index,
            tumour,
            slices=48,
            first_z=float(rng.uniform(-40, 0)),
            around_tumour=tumour,
            shuffle=index % 3 == 0,
            multiframe=index % 4 == 1,
        )
        result = analyzer.analyze(study.datasets)
        assert result.status == "analysed"
        truth.append(tumour)
        scores.append(result.findings[0].probability)
        record_localisation(study, result, ("Brain tumor",))
    auc = roc_auc(np.array(truth), np.array(scores))
    assert auc >= 0.90, f"brain tumour AUC {auc:.3f}"


def test_brain_demo_on_whole_heads_localises_tumours_and_clears_normal_brains(
    demo_registry: PackageRegistry,
) -> None:
    """Whole heads as an MPRAGE arrives (200 axial slices 1 mm apart, vertex to skull base,
    192 px, like acceptance case A03): every heatmap of a tumour study is on a slice through
    the tumour, its peak inside the mask or within one feature-map cell of it (15 mm here);
    every normal head stays below the threshold. Recipe r5 failed both on every seed: its
    top slices were the vertex and skull base, p > 0.99 with or without a tumour."""
    analyzer = demo_registry.get("brain-mri-tumor")
    threshold = analyzer.manifest.label("Brain tumor").threshold
    normal, distances = {}, {}
    for seed in range(9_510_000, 9_510_005):
        result = analyzer.analyze(brain_mri_study(seed, False).datasets)
        assert result.status == "analysed", result.reason
        normal[seed] = round(result.findings[0].probability, 4)
        study = brain_mri_study(seed, True)
        result = analyzer.analyze(study.datasets)
        assert result.status == "analysed", result.reason
        assert result.findings[0].present, (seed, result.findings[0].probability)
        assert len(result.heatmaps) == 3
        for heatmap in result.heatmaps:
            mask = study.mask("Brain tumor", heatmap.image.sop_instance_uid)
            assert mask is not None and mask.any(), f"seed {seed}: heatmap on a tumour-free slice"
            peak = np.unravel_index(int(np.argmax(heatmap.values)), heatmap.values.shape)
            distance = float(ndimage.distance_transform_edt(~mask)[peak])
            distances.setdefault(seed, []).append(round(distance, 1))
    print("normal-brain probabilities:", normal, "threshold", threshold)
    print("peak distance to the tumour mask (px):", distances)
    assert all(probability < threshold for probability in normal.values()), normal
    cell = 192 / FEATURE_CELLS
    assert all(d <= cell for per_seed in distances.values() for d in per_seed), distances


def test_head_ct_demo_detects_hemorrhage_and_measures_it(demo_registry: PackageRegistry) -> None:
    analyzer = demo_registry.get("head-ct-ich")
    truth, scores, volumes = [], [], []
    for index in range(15):
        kinds = () if index % 3 == 0 else (SUBTYPES[index % len(SUBTYPES)],)
        study = head_ct_study(9_600_000 + index, kinds, slices=40, shuffle=index % 2 == 0)
        result = analyzer.analyze(study.datasets)
        assert result.status == "analysed"
        any_finding = result.findings[0]
        truth.append(bool(kinds))
        scores.append(any_finding.probability)
        record_localisation(study, result, ("Intracranial hemorrhage", *SUBTYPES))
        drawn = study.measurements["hemorrhage_volume_ml"]
        if any_finding.present and kinds and drawn > 5:
            volumes.append((any_finding.measurements[0].value, drawn))
    auc = roc_auc(np.array(truth), np.array(scores))
    assert auc >= 0.90, f"intracranial haemorrhage AUC {auc:.3f}"
    assert volumes, "no true positive with a measurable volume"
    for estimate, drawn in volumes:
        assert estimate == pytest.approx(drawn, rel=0.35), (estimate, drawn)


def test_gradcam_peak_on_the_lesion_for_90_percent_of_true_positives() -> None:
    if len(LOCALISATION) < 4:
        pytest.skip("needs the four analyzer tests above in the same session")
    pairs = [pair for per_kind in LOCALISATION.values() for pair in per_kind]
    detail = {
        kind: f"strict {sum(s for s, _ in v)}/{len(v)}, within a cell {sum(t for _, t in v)}/{len(v)}"
        for kind, v in LOCALISATION.items()
    }
    assert len(pairs) >= 40, detail
    print("Grad-CAM localisation:", detail)
    assert float(np.mean([tolerant for _, tolerant in pairs])) >= 0.90, detail
