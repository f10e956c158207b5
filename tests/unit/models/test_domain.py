"""The input-domain gate's pieces: the shrinkage Gaussian, the verdict, the package checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from integrations.errors import PackageError
from models.domain import (
    REASON_PREFIX,
    DomainModel,
    Observation,
    calibrate,
    gate,
    intensity_range,
    mahalanobis,
    shrunk_gaussian,
    unit_scores,
)
from models.loading import inspect_package, load_package, read_manifest, write_domain
from models.package import DomainSpec, parse_manifest
from models.package_registry import PackageRegistry
from models.phantoms.chest import chest_xray_study
from tests.fix_models import TinyFactory, tiny_manifest

RANGE = {name: (0.0, 1.0) for name in ("mean", "std", "low_fraction", "high_fraction")}


def spec(unit: str = "image", limit: float = 5.0, **intensity: tuple[float, float]) -> DomainSpec:
    return DomainSpec(sha256="0" * 64, unit=unit, limit=limit, intensity={**RANGE, **intensity})


def test_shrinkage_gaussian_separates_shifted_features_with_fewer_samples_than_dimensions() -> None:
    rng = np.random.default_rng(0)
    train = rng.standard_normal((40, 64))  # n < d: the plain covariance is singular
    mean, precision, shrinkage = shrunk_gaussian(train)
    assert np.isfinite(precision).all() and 0.0 < shrinkage <= 1.0
    inside = mahalanobis(rng.standard_normal((50, 64)), mean, precision)
    outside = mahalanobis(rng.standard_normal((50, 64)) + 3.0, mean, precision)
    assert outside.min() > inside.max()


def test_gate_names_score_and_limit_and_checks_intensity_first() -> None:
    model = DomainModel(spec(limit=5.0, mean=(0.2, 0.6)), np.zeros(3), np.eye(3))
    near = Observation(np.zeros((2, 3)), np.array([[0.4, 0.2, 0.0, 0.0]] * 2))
    assert gate(model, [near]).reason is None
    far = Observation(np.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]), near.statistics)
    assert gate(model, [far]).reason == f"{REASON_PREFIX} (score 9.0, limit 5.0)"
    dark = Observation(np.zeros((1, 3)), np.array([[0.9, 0.2, 0.0, 0.0]]))
    assert "intensity mean 0.900 outside 0.200..0.600" in str(gate(model, [dark]).reason)


def test_series_unit_takes_the_median_slice_score() -> None:
    model = DomainModel(spec(unit="series"), np.zeros(1), np.eye(1))
    slices = Observation(np.array([[0.0], [1.0], [50.0]]), np.full((3, 4), 0.1))
    (unit,) = unit_scores([slices], "series", model)
    assert unit.score == pytest.approx(1.0)  # one odd end slice does not reject a series


def test_calibration_reports_false_rejection_detection_and_auc() -> None:
    model = DomainModel(spec(), np.zeros(1), np.eye(1))
    stats = np.full((1, 4), 0.1)
    inside = unit_scores(
        [Observation(np.linspace(0, 2, 100)[:, None], np.repeat(stats, 100, 0))], "image", model
    )
    outside = unit_scores(
        [Observation(np.full((20, 1), 10.0), np.repeat(stats, 20, 0))], "image", model
    )
    accepted = intensity_range(np.repeat(stats, 3, 0))
    limit, report = calibrate(inside, {"noise": outside}, accepted)
    assert 1.9 < limit < 10.0
    assert report["in_domain_false_rejection"] <= 0.01
    assert report["ood_detection"] == 1.0 and report["score_auc"] == 1.0


def test_a_clinical_package_must_declare_its_domain() -> None:
    data = tiny_manifest("chest-xray")
    data.update(clinical_use=True, weights={"sha256": "a" * 64})
    with pytest.raises(PackageError, match="input domain"):
        parse_manifest(data, "test")


def test_domain_file_is_checksummed_like_the_weights(tiny_package_factory: TinyFactory) -> None:
    path = tiny_package_factory("chest-xray")
    features = read_manifest(path).architecture.feature_count
    domain = {"unit": "image", "limit": 3.0, "intensity": RANGE}
    write_domain(path, domain, {"mean": torch.zeros(features), "precision": torch.eye(features)})
    loaded = load_package(path, torch.device("cpu"))
    assert loaded.domain is not None and loaded.domain.mean.shape == (features,)
    (path / "domain.pt").write_bytes((path / "domain.pt").read_bytes() + b"x")
    assert inspect_package(path).checksum == "domain file refused"
    with pytest.raises(PackageError, match=r"SHA-256 of domain\.pt"):
        load_package(path, torch.device("cpu"))
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["domain"]["file"] == "domain.pt"


def test_package_without_domain_is_analysed_but_flagged(
    tiny_package_factory: TinyFactory, tmp_path: Path
) -> None:
    tiny_package_factory("chest-xray", directory=tmp_path / "models")
    analyzer = PackageRegistry(tmp_path / "models", "cpu", allow_non_clinical=True).get(
        "chest-xray"
    )
    result = analyzer.analyze(chest_xray_study(1, (), size=256).datasets)
    assert result.status == "analysed"
    assert result.extra["domain"]["checked"] is False
