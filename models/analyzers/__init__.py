"""The analyzer implementations, looked up by the ``analyzer`` field of a manifest (pure).

Imported lazily so that listing packages does not import every analyzer's dependencies.
"""

from __future__ import annotations

import importlib

from integrations.errors import PackageError
from models.analyzers.base import BaseAnalyzer

ANALYZER_CLASSES: dict[str, str] = {
    "chest-xray": "models.analyzers.chest_xray:ChestXrayAnalyzer",
    "msk-fracture": "models.analyzers.msk_fracture:MskFractureAnalyzer",
    "brain-mri-tumor": "models.analyzers.brain_mri_tumor:BrainMriTumorAnalyzer",
    "head-ct-ich": "models.analyzers.head_ct_ich:HeadCtHemorrhageAnalyzer",
    "head-ct-stroke": "models.analyzers.head_ct_stroke:HeadCtStrokeAnalyzer",
    "brain-mri-stroke": "models.analyzers.brain_mri_stroke:BrainMriStrokeAnalyzer",
    "cta-aortic-dissection": "models.analyzers.aortic_dissection:AorticDissectionAnalyzer",
}


def analyzer_class(kind: str) -> type[BaseAnalyzer]:
    target = ANALYZER_CLASSES.get(kind)
    if target is None:
        raise PackageError(
            f"unknown analyzer {kind!r}; known: {', '.join(sorted(ANALYZER_CLASSES))}"
        )
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    assert issubclass(cls, BaseAnalyzer)
    return cls
