"""The registry: packages found by name, loaded once per process, refusals named together."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrations.errors import PackageError
from models.package_registry import PackageRegistry, get_registry
from models.registry import Analyzer, ModelRegistry
from models.registry import get_registry as protocol_get_registry
from tests.fix_models import TinyFactory


def test_registry_loads_a_package_once_and_keeps_it(
    tiny_package_factory: TinyFactory, tmp_path: Path
) -> None:
    tiny_package_factory("chest-xray", directory=tmp_path / "models")
    registry = PackageRegistry(tmp_path / "models", "cpu", allow_non_clinical=True)
    typed: ModelRegistry = registry  # the concrete class satisfies the flow's protocol
    assert typed.models_dir == tmp_path / "models"
    assert registry.available() == ["chest-xray"]
    first = registry.get("chest-xray")
    assert isinstance(first, Analyzer)
    assert registry.get("chest-xray") is first
    assert registry.loaded() == ["chest-xray"]


def test_require_names_every_missing_and_refused_package(
    tiny_package_factory: TinyFactory, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    path = tiny_package_factory("chest-xray", directory=models)
    weights = bytearray((path / "weights.pt").read_bytes())
    weights[100] ^= 0x01
    (path / "weights.pt").write_bytes(bytes(weights))
    registry = PackageRegistry(models, "cpu", allow_non_clinical=True)
    with pytest.raises(PackageError) as refused:
        registry.require(["chest-xray", "head-ct-ich"])
    text = str(refused.value)
    assert "2 model package(s)" in text
    assert "'chest-xray'" in text and "SHA-256" in text
    assert "'head-ct-ich' not found" in text
    assert registry.available() == []


def test_two_packages_with_one_name_are_ambiguous(
    tiny_package_factory: TinyFactory, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    first = tiny_package_factory("chest-xray", directory=models)
    first.rename(models / "chest-xray-old")
    tiny_package_factory("chest-xray", directory=models)
    with pytest.raises(PackageError, match="ambiguous"):
        PackageRegistry(models, "cpu", allow_non_clinical=True).get("chest-xray")


def test_get_registry_is_one_instance_per_directory_and_device(tmp_path: Path) -> None:
    assert get_registry(tmp_path, "cpu") is get_registry(tmp_path / ".", "cpu")
    assert get_registry(tmp_path, "cpu") is not get_registry(tmp_path, "auto")
    assert protocol_get_registry(tmp_path, "cpu") is get_registry(tmp_path, "cpu")


def test_empty_or_missing_directory_has_nothing(tmp_path: Path) -> None:
    registry = PackageRegistry(tmp_path / "nowhere")
    assert registry.available() == []
    with pytest.raises(PackageError, match="not found"):
        registry.require(["msk-fracture"])


def test_a_non_clinical_package_is_refused_unless_allowed(
    tiny_package_factory: TinyFactory, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    tiny_package_factory("chest-xray", directory=models)  # clinical_use: false
    with pytest.raises(PackageError) as refused:
        PackageRegistry(models, "cpu").get("chest-xray")
    text = str(refused.value)
    assert "'chest-xray'" in text and "not for clinical use" in text
    assert "[models] allow_non_clinical = true" in text
    analyzer = PackageRegistry(models, "cpu", allow_non_clinical=True).get("chest-xray")
    assert analyzer.identity.clinical_use is False
    assert get_registry(models, "cpu") is not get_registry(models, "cpu", allow_non_clinical=True)
