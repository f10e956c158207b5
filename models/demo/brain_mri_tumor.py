"""Demo recipe for the brain MRI tumour analyzer (pure compute; the caller writes the package).

A training sample is one slice (with its neighbours) of a 16-slice slab cut from a generated
head at a random height, prepared by the analyzer's own series preprocessing; it is positive
when the tumour covers at least 20 pixels of that slice. Seeds: training from 1_000_000,
validation from 2_000_000, held-out test from 3_000_000.
"""

from __future__ import annotations

import numpy as np

from models.analyzers.volume import prepare_series
from models.codes import BRAIN_NEOPLASM
from models.demo.common import FEATURE_CELLS, Recipe, mask_grid, small_densenet, stack_samples
from models.labels import BRAIN_TUMOR
from models.package import InputSpec
from models.phantoms.brain import brain_mri_study
from models.training import TrainingConfig

LABELS = (BRAIN_TUMOR,)
INPUT = {
    "size": [128, 128],
    "channels": ["previous slice", "slice", "next slice"],
    "windowing": "tissue_median",
    "context_slices": 1,
    "value_range": [-1.0, 1.0],
    "crop": "none",
    "batch_size": 32,
}
SLAB = 12
PER_SLAB = 4
MIN_PIXELS = 20


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``PER_SLAB`` slices from each slab seeded ``first`` .. ``last - 1``."""
    spec = InputSpec.model_validate(INPUT)
    inputs, targets, masks = [], [], []
    for seed in range(first, last):
        rng = np.random.default_rng(seed)
        tumour = bool(rng.random() < 0.6)
        study = brain_mri_study(
            seed,
            tumour,
            slices=SLAB,
            first_z=float(rng.uniform(-60, 50)),
            around_tumour=tumour,
            matrix=128,
        )
        prepared = prepare_series(study.datasets, spec)
        areas = np.array(
            [
                int(m.sum())
                if (m := study.mask(BRAIN_TUMOR, frame.reference.sop_instance_uid)) is not None
                else 0
                for frame in prepared.frames
            ]
        )
        positive = np.flatnonzero(areas >= MIN_PIXELS)
        candidates = list(rng.choice(SLAB, size=PER_SLAB, replace=False))
        if positive.size:  # half of a tumour slab's samples show the tumour
            candidates[: PER_SLAB // 2] = list(rng.choice(positive, size=PER_SLAB // 2))
        for index in candidates:
            inputs.append(prepared.inputs[index].astype(np.float16))
            targets.append([1.0 if areas[index] >= MIN_PIXELS else 0.0])
            mask = study.mask(BRAIN_TUMOR, prepared.frames[index].reference.sop_instance_uid)
            masks.append([mask_grid(mask, prepared.geometry, FEATURE_CELLS)])
    return stack_samples(inputs, targets, masks)


RECIPE = Recipe(
    name="brain-mri-tumor",
    revision="r5",
    description="Brain MRI (post-contrast T1), tumour per slice aggregated per study (small DenseNet)",
    pipeline="brain MRI",
    generator="models.phantoms.brain",
    unit="slice (2.5D); study = mean of the top 3 slices",
    modalities=("MR",),
    body_parts=("BRAIN", "HEAD"),
    views=(),
    labels=LABELS,
    codes={BRAIN_TUMOR: BRAIN_NEOPLASM},
    tiers={BRAIN_TUMOR: "Urgent"},
    architecture=small_densenet(in_channels=3, num_outputs=len(LABELS)),
    input=INPUT,
    samples=samples,
    splits={"train": (1_000_000, 400), "validation": (2_000_000, 60), "test": (3_000_000, 80)},
    minimum_split=8,
    config=TrainingConfig(epochs=10, batch_size=32, learning_rate=4e-3, seed=13),
)
build = RECIPE.build
