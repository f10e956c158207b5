"""The demo training path end to end in a tiny configuration: deterministic, loadable."""

from __future__ import annotations

from pathlib import Path

from models.demo import build_demo_package
from models.loading import read_manifest
from models.package_registry import PackageRegistry
from models.phantoms.chest import chest_xray_study


def test_tiny_chest_training_is_deterministic_and_loads(tmp_path: Path) -> None:
    first = build_demo_package("chest-xray", tmp_path / "a", scale=0.01, workers=1)
    second = build_demo_package("chest-xray", tmp_path / "b", scale=0.01, workers=1)
    manifest = read_manifest(first)
    assert manifest.weights.sha256 == read_manifest(second).weights.sha256
    assert manifest.is_demo and not manifest.clinical_use
    assert manifest.training["recipe"].startswith("chest-xray/")
    assert set(manifest.training["held_out"]) == {label.name for label in manifest.labels}
    analyzer = PackageRegistry(tmp_path / "a", "cpu", allow_non_clinical=True).get("chest-xray")
    result = analyzer.analyze(chest_xray_study(1, ("Effusion",), size=128).datasets)
    assert result.status == "analysed" and len(result.findings) == 19
