"""The analyzer interface and the registry that finds analyzers by name (loading is I/O).

Routing names analyzers ("chest-xray", ...); the registry maps a name to a loaded
:class:`Analyzer`, loading each model package once per process and keeping it warm.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydicom import Dataset

from models.results import AnalysisResult, ModelIdentity


@runtime_checkable
class Analyzer(Protocol):
    """One loaded model that turns the routed images of a study into an AnalysisResult."""

    name: str
    identity: ModelIdentity

    def analyze(self, datasets: Sequence[Dataset]) -> AnalysisResult:
        """Analyse the given instances (one or more series of one study).

        Never raises for an image it cannot use: returns a result with status
        ``not_analysable`` and the reason instead.
        """
        ...

    def warm_up(self) -> None:
        """Run the network once on a blank input, before the first study needs it."""
        ...


class ModelRegistry(Protocol):
    models_dir: Path

    def available(self) -> list[str]: ...

    def require(self, names: Sequence[str]) -> None:
        """Raise PackageError naming every package that is missing or refused."""
        ...

    def get(self, name: str) -> Analyzer: ...


def get_registry(
    models_dir: Path, device: str = "auto", *, allow_non_clinical: bool = False
) -> ModelRegistry:
    """The process-wide registry of packages in ``models_dir`` (loads each package once).

    Imported lazily: this module stays free of torch for callers that only need the protocols.
    """
    from models.package_registry import get_registry as _get_registry

    return _get_registry(models_dir, device, allow_non_clinical=allow_non_clinical)
