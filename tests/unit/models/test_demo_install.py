"""ensure_demo_packages never overwrites a site's package and leaves unknown names alone."""

from __future__ import annotations

from pathlib import Path

from models.demo import ensure_demo_packages
from models.loading import read_manifest
from tests.fix_models import TinyFactory


def test_a_site_package_under_another_folder_name_is_kept(
    tiny_package_factory: TinyFactory, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    site = tiny_package_factory("chest-xray", directory=models)
    renamed = site.rename(models / "chest-xray-site-v2")
    paths = ensure_demo_packages(models, ["chest-xray"], train_if_needed=False)
    assert paths == [renamed]
    assert not (models / "chest-xray").exists()
    assert read_manifest(renamed).version == "0.0.0-test"


def test_names_without_a_recipe_are_left_to_the_registry(tmp_path: Path) -> None:
    assert ensure_demo_packages(tmp_path, ["site-special-model"], train_if_needed=False) == []
