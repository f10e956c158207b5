"""Model fixtures: tiny random-weight packages for unit tests, the demo packages for the rest.

``tiny_package_factory`` writes a package whose network is freshly initialised (seeded) with
the demo recipe's architecture and manifest, so the whole loading path is real while nothing
is trained. ``demo_models_dir`` installs the committed demo packages once per session.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from models.demo import BUNDLED_DIR, RECIPES, ensure_demo_packages, recipe
from models.loading import write_package
from models.networks import build_network
from models.package import ArchitectureSpec
from models.package_registry import PackageRegistry

TinyFactory = Callable[..., Path]


def tiny_manifest(name: str, thresholds: dict[str, float] | None = None) -> dict[str, Any]:
    """The demo recipe's manifest for ``name`` with every label at 0.5 unless overridden."""
    found = recipe(name)
    labels = []
    for entry in found.label_definitions():
        entry = dict(entry)
        entry["threshold"] = (thresholds or {}).get(entry["name"], 0.5)
        labels.append(entry)
    return {
        "name": name,
        "version": "0.0.0-test",
        "analyzer": name,
        "intended_use": "unit tests only",
        "clinical_use": False,
        "modalities": list(found.modalities),
        "body_parts": list(found.body_parts),
        "views": list(found.views),
        "architecture": copy.deepcopy(found.architecture),
        "input": copy.deepcopy(found.input),
        "labels": labels,
        "training": {"source": "random-init", "seed": 0},
    }


@pytest.fixture
def tiny_package_factory(tmp_path: Path) -> TinyFactory:
    def make(
        name: str = "chest-xray",
        *,
        thresholds: dict[str, float] | None = None,
        directory: Path | None = None,
        seed: int = 0,
        edit: Callable[[dict[str, Any]], None] | None = None,
    ) -> Path:
        manifest = tiny_manifest(name, thresholds)
        if edit is not None:
            edit(manifest)
        torch.manual_seed(seed)
        network = build_network(ArchitectureSpec.model_validate(manifest["architecture"]))
        target = (directory or tmp_path / "models") / manifest["name"]
        write_package(target, manifest, network.state_dict())
        return target

    return make


@pytest.fixture(scope="session")
def demo_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed demo packages installed (checksums verified) into a session folder."""
    directory = tmp_path_factory.mktemp("demo-models")
    bundled = [name for name in RECIPES if (BUNDLED_DIR / name / "manifest.json").is_file()]
    ensure_demo_packages(directory, bundled, train_if_needed=False)
    return directory


@pytest.fixture(scope="session")
def demo_registry(demo_models_dir: Path) -> PackageRegistry:
    return PackageRegistry(demo_models_dir, "cpu", allow_non_clinical=True)
