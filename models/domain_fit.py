"""Fitting and calibrating a package's input domain from generated studies (pure: no I/O).

:func:`fit_domain` runs the analyzer itself (so the features come through exactly the
preprocessing a study takes) on in-domain studies, fits the feature Gaussian and intensity
ranges on one set, and chooses the score limit on a held-out in-domain set and the generated
out-of-domain sets of :mod:`models.phantoms.ood` (:func:`models.domain.calibrate`); the
calibration is stored in the manifest and ``evaluate-model`` reports it.

For the demo analyzers the in-domain studies are their phantoms (seeds 8_000_000 and up:
never used by the recipes or the tests); a real package is fitted on its own training data,
with the same functions, by whoever trains it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from pydicom import Dataset

from models.analyzers.base import BaseAnalyzer
from models.domain import (
    DomainModel,
    Observation,
    UnitScore,
    calibrate,
    intensity_range,
    shrunk_gaussian,
    unit_scores,
)
from models.labels import HEMORRHAGE_SUBTYPES
from models.package import DomainSpec
from models.phantoms.aorta import cta_aorta_study
from models.phantoms.brain import brain_mri_study
from models.phantoms.chest import chest_xray_study, random_chest_findings
from models.phantoms.head_ct import head_ct_study
from models.phantoms.msk import msk_study
from models.phantoms.ood import GENERATORS
from models.phantoms.stroke import brain_mri_stroke_study, head_ct_stroke_study

StudyFactory = Callable[[int], list[Dataset]]
FIT_SEED = 8_000_000
HELD_OUT_SEED = 8_500_000
OOD_SEED = 8_700_000


def _chest(seed: int) -> list[Dataset]:
    rng = np.random.default_rng(seed)
    return chest_xray_study(
        seed,
        random_chest_findings(rng),
        size=int(rng.choice([256, 384, 512])),
        modality=str(rng.choice(["DX", "CR"])),
        photometric=str(rng.choice(["MONOCHROME2", "MONOCHROME1"])),
        voi=str(rng.choice(["window", "lut", "none"])),
    ).datasets


def _msk(seed: int) -> list[Dataset]:
    rng = np.random.default_rng(seed)
    return msk_study(
        seed,
        seed % 2 == 0,
        size=int(rng.choice([256, 320, 384])),
        photometric=str(rng.choice(["MONOCHROME2", "MONOCHROME1"])),
    ).datasets


def _brain(seed: int) -> list[Dataset]:
    rng = np.random.default_rng(seed)
    tumour = seed % 2 == 0
    return brain_mri_study(
        seed,
        tumour,
        slices=(slices := int(rng.choice([32, 48, 64, 200]))),
        # 200 slices are the whole head, vertex to skull base: always centred on the head
        first_z=float(rng.uniform(-40, 0)) if rng.random() < 0.5 and slices < 200 else None,
        around_tumour=tumour and rng.random() < 0.5 and slices < 200,
        multiframe=rng.random() < 0.25,
    ).datasets


def _head_ct(seed: int) -> list[Dataset]:
    rng = np.random.default_rng(seed)
    kinds = () if seed % 3 == 0 else (HEMORRHAGE_SUBTYPES[seed % len(HEMORRHAGE_SUBTYPES)],)
    return head_ct_study(
        seed,
        kinds,
        slices=int(rng.choice([24, 32, 40])),
        around_bleed=bool(kinds) and rng.random() < 0.5,
    ).datasets


def _head_ct_stroke(seed: int) -> list[Dataset]:
    rng = np.random.default_rng(seed)
    return head_ct_stroke_study(seed, seed % 2 == 0, slices=int(rng.choice([24, 32, 40]))).datasets


def _brain_mri_stroke(seed: int) -> list[Dataset]:
    rng = np.random.default_rng(seed)
    return brain_mri_stroke_study(
        seed, seed % 2 == 0, slices=int(rng.choice([16, 20, 24]))
    ).datasets


def _cta_aorta(seed: int) -> list[Dataset]:
    rng = np.random.default_rng(seed)
    stanford = (None, "A", "B")[seed % 3]
    return cta_aorta_study(seed, stanford, slices=int(rng.choice([20, 26, 32]))).datasets


# analyzer kind -> (in-domain study factory, fit studies, held-out studies, OOD studies per set)
DEMO_DOMAINS: dict[str, tuple[StudyFactory, int, int, int]] = {
    "chest-xray": (_chest, 120, 60, 12),
    "msk-fracture": (_msk, 60, 30, 6),
    "brain-mri-tumor": (_brain, 16, 20, 3),
    "head-ct-ich": (_head_ct, 20, 20, 3),
    "head-ct-stroke": (_head_ct_stroke, 20, 20, 3),
    "brain-mri-stroke": (_brain_mri_stroke, 20, 20, 3),
    "cta-aortic-dissection": (_cta_aorta, 20, 20, 3),
}


def _observations(analyzer: BaseAnalyzer, studies: Sequence[list[Dataset]]) -> list[Observation]:
    seen: list[Observation] = []
    for datasets in studies:
        result, observations = analyzer.observe(datasets)
        if result.status == "analysed":
            seen.extend(observations)
    return seen


def _units(
    model: DomainModel, analyzer: BaseAnalyzer, studies: Sequence[list[Dataset]]
) -> list[UnitScore]:
    return unit_scores(_observations(analyzer, studies), model.spec.unit, model)


def ood_studies(
    factory: StudyFactory, count: int, seed: int = OOD_SEED
) -> dict[str, list[list[Dataset]]]:
    """Each generated out-of-domain set: ``count`` studies, in-domain headers, other pixels."""
    sets = {}
    for offset, (name, generator) in enumerate(GENERATORS.items()):
        rng = np.random.default_rng(seed + 1000 * offset)
        sets[name] = [generator(factory(seed + 1000 * offset + i), rng) for i in range(count)]
    return sets


def fit_domain(
    analyzer: BaseAnalyzer, factory: StudyFactory, fit: int, held_out: int, ood: int
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The manifest's ``domain`` entry (without SHA-256) and the tensors for ``domain.pt``."""
    fitted = _observations(analyzer, [factory(FIT_SEED + i) for i in range(fit)])
    if not fitted:
        raise ValueError("no fitting study was analysable: the factory makes the wrong images")
    features = np.concatenate([o.features for o in fitted])
    mean, precision, shrinkage = shrunk_gaussian(features)
    # Intensity ranges on the units the gate scores (images, or series medians).
    placeholder_spec = {
        "sha256": "0" * 64,
        "unit": analyzer.domain_unit,
        "limit": 1.0,
        "intensity": {k: (0.0, 1.0) for k in ("mean", "std", "low_fraction", "high_fraction")},
    }
    model = DomainModel(DomainSpec.model_validate(placeholder_spec), mean, precision)
    fitted_units = unit_scores(fitted, analyzer.domain_unit, model)
    accepted = intensity_range(np.stack([u.statistics for u in fitted_units]))
    inside = _units(model, analyzer, [factory(HELD_OUT_SEED + i) for i in range(held_out)])
    outside = {
        name: _units(model, analyzer, studies)
        for name, studies in ood_studies(factory, ood).items()
    }
    limit, calibration = calibrate(inside, outside, accepted)
    domain = {
        "file": "domain.pt",
        "score": "mahalanobis-pooled",
        "unit": analyzer.domain_unit,
        "limit": round(limit, 4),
        "intensity": accepted.model_dump(mode="json"),
        "calibration": {
            **calibration,
            "fitted_on": f"{len(features)} inputs from {fit} generated in-domain studies",
            "feature_dimension": int(features.shape[1]),
            "shrinkage": round(shrinkage, 4),
        },
    }
    tensors = {
        "mean": torch.from_numpy(mean.astype(np.float32)),
        "precision": torch.from_numpy(precision.astype(np.float32)),
    }
    return domain, tensors
