"""The model registry: packages in a models directory, loaded once per process (I/O).

Routing names analyzers ("chest-xray", "msk-fracture", ...); each name is a package in the
configured models directory (a folder with ``manifest.json``, or a ``.zip`` of one). The first
:meth:`PackageRegistry.get` of a name verifies and loads it and keeps the analyzer warm for
the life of the process; :func:`get_registry` hands every caller in a process the same
registry for the same directory and device.

A package whose manifest says ``clinical_use: false`` (every demo package) is refused unless
the registry was made with ``allow_non_clinical`` (``[models] allow_non_clinical = true``);
its results then carry ``clinical_use = False`` and every output says NOT FOR CLINICAL USE.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from integrations.errors import PackageError
from models.analyzers import analyzer_class
from models.analyzers.base import BaseAnalyzer
from models.loading import PackageStatus, inspect_package, is_package, load_package, read_manifest
from models.runtime import configure_cpu_threads, resolve_device


class PackageRegistry:
    """A concrete :class:`models.registry.ModelRegistry` over one models directory."""

    def __init__(
        self, models_dir: Path, device: str = "auto", *, allow_non_clinical: bool = False
    ) -> None:
        self.models_dir = Path(models_dir)
        self.device_name = device
        self.allow_non_clinical = allow_non_clinical
        self._analyzers: dict[str, BaseAnalyzer] = {}
        self._lock = threading.RLock()

    # ----------------------------------------------------------------------------- listing
    def package_paths(self) -> dict[str, list[Path]]:
        """Package name (from its manifest; folder name if unreadable) → paths found."""
        found: dict[str, list[Path]] = {}
        if not self.models_dir.is_dir():
            return found
        for path in sorted(self.models_dir.iterdir()):
            if path.name.startswith(".") or not is_package(path):
                continue
            try:
                name = read_manifest(path).name
            except PackageError:
                name = path.stem
            found.setdefault(name, []).append(path)
        return found

    def statuses(self) -> list[PackageStatus]:
        return [inspect_package(path) for paths in self.package_paths().values() for path in paths]

    def available(self) -> list[str]:
        """Names with exactly one package whose manifest reads and whose checksum matches."""
        return sorted(
            name
            for name, paths in self.package_paths().items()
            if len(paths) == 1 and inspect_package(paths[0]).ok
        )

    # ----------------------------------------------------------------------------- loading
    def _path_for(self, name: str) -> Path:
        paths = self.package_paths().get(name, [])
        if not paths:
            raise PackageError(
                f"model package {name!r} not found in {self.models_dir} (routing refers to it; "
                "install the package there, or build the demo packages with "
                "`pacsflow models demo`)"
            )
        if len(paths) > 1:
            raise PackageError(
                f"model package {name!r} is ambiguous: {', '.join(str(p) for p in paths)} all "
                "declare that name; keep one in the models directory"
            )
        return paths[0]

    def get(self, name: str) -> BaseAnalyzer:
        with self._lock:
            analyzer = self._analyzers.get(name)
            if analyzer is not None:
                return analyzer
            path = self._path_for(name)
            manifest = read_manifest(path)
            if not manifest.clinical_use and not self.allow_non_clinical:
                raise PackageError(non_clinical_refusal(name, path))
            cls = analyzer_class(manifest.analyzer)
            device = resolve_device(self.device_name)
            if device.type == "cpu":
                configure_cpu_threads()
            package = load_package(path, device, cls.required_labels)
            analyzer = cls(package)
            self._analyzers[name] = analyzer
            return analyzer

    def require(self, names: Sequence[str]) -> None:
        """Load every named package now; one :class:`PackageError` naming all refusals."""
        problems = []
        for name in dict.fromkeys(names):
            try:
                self.get(name)
            except PackageError as error:
                problems.append(str(error))
        if problems:
            raise PackageError(
                f"{len(problems)} model package(s) missing or refused: " + " | ".join(problems)
            )

    def loaded(self) -> list[str]:
        with self._lock:
            return sorted(self._analyzers)

    def forget(self, name: str | None = None) -> None:
        """Drop loaded analyzers (all, or one) so the next get reloads from disk."""
        with self._lock:
            if name is None:
                self._analyzers.clear()
            else:
                self._analyzers.pop(name, None)


def non_clinical_refusal(name: str, path: Path) -> str:
    return (
        f"model package {name!r} ({path}) is not for clinical use (clinical_use = false in its"
        " manifest: demo or research weights); refusing to load it on patient images. Install a"
        " clinical package, or set [models] allow_non_clinical = true on a demo or test site"
        " (every output is then marked NOT FOR CLINICAL USE)"
    )


_registries: dict[tuple[Path, str, bool], PackageRegistry] = {}
_registries_lock = threading.Lock()


def get_registry(
    models_dir: Path, device: str = "auto", *, allow_non_clinical: bool = False
) -> PackageRegistry:
    """The process-wide registry for ``models_dir`` on ``device`` (created on first use)."""
    key = (Path(models_dir).resolve(), device, allow_non_clinical)
    with _registries_lock:
        registry = _registries.get(key)
        if registry is None:
            registry = PackageRegistry(key[0], device, allow_non_clinical=allow_non_clinical)
            _registries[key] = registry
        return registry
