"""Demo model packages: trained on generated images, installed when missing (I/O).

Each analyzer has a recipe (``models.demo.<analyzer>.RECIPE``, a
:class:`~models.demo.common.Recipe`) that generates labelled phantom studies, trains a small
network and measures it on a held-out generated set. The packages
the recipes produced are committed under ``models/demo/packages`` (small: well under 1 MB
each), so :func:`ensure_demo_packages` only copies them into the models directory and verifies
their checksum: ``make demo`` and the tests never wait for training. The ``train-demo-models``
flow (or :func:`build_demo_package`) retrains a package from its recipe; a committed package
whose recipe revision is older than the code's is retrained instead of copied.

Every demo manifest says "demo weights trained on generated images; not for clinical use"
and carries ``clinical_use: false``; demo packages load through exactly the code path real
weights take (:func:`models.loading.load_package`).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from integrations.errors import PackageError
from models.demo.common import Recipe
from models.loading import inspect_package, is_package, read_manifest, write_package

log = logging.getLogger(__name__)

RECIPES: dict[str, str] = {
    "chest-xray": "models.demo.chest_xray",
    "msk-fracture": "models.demo.msk_fracture",
    "brain-mri-tumor": "models.demo.brain_mri_tumor",
    "head-ct-ich": "models.demo.head_ct_ich",
    "head-ct-stroke": "models.demo.head_ct_stroke",
    "brain-mri-stroke": "models.demo.brain_mri_stroke",
    "cta-aortic-dissection": "models.demo.cta_aortic_dissection",
}
BUNDLED_DIR = Path(__file__).parent / "packages"


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise PackageError(f"no demo recipe for {name!r}; known: {', '.join(RECIPES)}")
    found: Recipe = importlib.import_module(RECIPES[name]).RECIPE
    return found


def current_recipe_prefix(name: str) -> str:
    found = recipe(name)
    return f"{found.name}/{found.revision}/"


@contextlib.contextmanager
def _build_lock(models_dir: Path) -> Iterator[None]:
    """One builder per models directory at a time (several warm workers may start together)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / ".demo-build.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _install(source: Path, target: Path) -> None:
    """Copy a package folder into place atomically (temporary sibling, then rename)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; workers may run as another user
    try:
        for item in source.iterdir():
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        status = inspect_package(staging)
        if not status.ok:
            raise PackageError(f"demo package {source} failed its check: {status.problem}")
        if target.exists():
            retired = target.with_name(f".{target.name}.retired-{os.getpid()}")
            target.rename(retired)
            shutil.rmtree(retired, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fit_demo_domain(name: str, package_dir: Path, *, scale: float = 1.0) -> Path:
    """Fit and calibrate ``name``'s input domain on generated studies, from its weights as they
    are (no retraining), and write ``domain.pt`` and the manifest's ``domain`` into the package.
    """
    import torch

    from models.analyzers import analyzer_class
    from models.domain_fit import DEMO_DOMAINS, fit_domain
    from models.loading import load_package, write_domain

    if name not in DEMO_DOMAINS:
        raise PackageError(
            f"no generated in-domain studies for {name!r}; known: {', '.join(DEMO_DOMAINS)}"
        )
    factory, fit, held_out, ood = DEMO_DOMAINS[name]
    manifest = read_manifest(package_dir)
    cls = analyzer_class(manifest.analyzer)
    analyzer = cls(load_package(package_dir, torch.device("cpu"), cls.required_labels))
    counts = [
        max(minimum, round(count * scale)) for count, minimum in ((fit, 4), (held_out, 3), (ood, 1))
    ]
    domain, tensors = fit_domain(analyzer, factory, *counts)
    write_domain(package_dir, domain, tensors)
    log.info("fitted the input domain of %s: limit %s", name, domain["limit"])
    return package_dir


def build_demo_package(
    name: str,
    output_dir: Path,
    *,
    scale: float = 1.0,
    seed: int = 0,
    workers: int | None = None,
) -> Path:
    """Train ``name``'s demo network from its recipe and write the package to ``output_dir/name``."""
    log.info("training demo package %s (scale %s, seed %s)", name, scale, seed)
    build = recipe(name).build(scale=scale, seed=seed, workers=workers)
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.build.", dir=output_dir))
    try:
        write_package(staging, build.manifest, build.state_dict)
        fit_demo_domain(name, staging, scale=scale)
        _install(staging, output_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir / name


def _is_current_demo(path: Path, name: str) -> bool:
    manifest = read_manifest(path)
    recipe_id = str(manifest.training.get("recipe", ""))
    return manifest.is_demo and recipe_id.startswith(current_recipe_prefix(name))


def _declared_names(models_dir: Path) -> dict[str, Path]:
    """Package name → path for every readable package in ``models_dir``, whatever its folder."""
    names: dict[str, Path] = {}
    if models_dir.is_dir():
        for path in sorted(models_dir.iterdir()):
            if not path.name.startswith(".") and is_package(path):
                try:
                    names.setdefault(read_manifest(path).name, path)
                except PackageError:
                    names.setdefault(path.stem, path)
    return names


def ensure_demo_packages(
    models_dir: Path, names: Sequence[str] | None = None, *, train_if_needed: bool = True
) -> list[Path]:
    """Make sure a package exists for each name (default: every recipe); return their paths.

    A package already in ``models_dir`` is kept as it is, unless it is a demo package from an
    older recipe revision (then it is replaced). Names without a demo recipe are left to the
    registry, which names them if they have no package. Otherwise the committed demo package is
    copied in; if there is none for the current recipe, it is trained (minutes) unless
    ``train_if_needed`` is false, in which case :class:`PackageError` says so.
    """
    models_dir = Path(models_dir)
    wanted = list(names) if names is not None else list(RECIPES)
    paths = []
    with _build_lock(models_dir):
        declared = _declared_names(models_dir)
        for name in wanted:
            existing = declared.get(name)
            if name not in RECIPES:  # a site package with no demo: the registry reports it
                if existing is not None:
                    paths.append(existing)
                else:
                    log.warning("no package and no demo recipe for %r in %s", name, models_dir)
                continue
            if existing is not None:
                try:
                    keep = not read_manifest(existing).is_demo or _is_current_demo(existing, name)
                except PackageError:
                    keep = True  # never overwrite what we cannot read; the registry will refuse it
                if keep:
                    paths.append(existing)
                    continue
            target = models_dir / name
            bundled = BUNDLED_DIR / name
            if is_package(bundled) and _is_current_demo(bundled, name):
                _install(bundled, target)
                log.info("installed demo package %s into %s", name, models_dir)
            elif train_if_needed:
                build_demo_package(name, models_dir)
            else:
                raise PackageError(
                    f"no current demo package for {name!r} is bundled and training was not allowed"
                )
            paths.append(target)
    return paths
