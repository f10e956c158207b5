"""Demo recipe for the brain MRI tumour analyzer (pure compute; the caller writes the package).

A training sample is one slice (with its neighbours) of a generated post-contrast T1 series,
prepared by the analyzer's own series preprocessing; it is positive when the tumour covers at
least 20 pixels of that slice. Half of the seeds draw a whole head (vertex to skull base, the
empty slices beyond it included, 128 or 192 px), the other half a 12-slice slab at a random
height or across the tumour. The whole heads matter twice: the analyzer reads every slice of
a series, so the network must have seen the small scalp-dominated sections at the vertex and
the skull base (revision r5 trained on slabs between z = -60 and +61 mm only, called those
sections tumour with p > 0.99, and every study, normal or not, Urgent, with the heatmaps on
slices far from the tumour); and the tissue-median scaling is computed over the whole series,
so a slice looks as it will at inference only when it was scaled with a whole series. Seeds:
training from 1_000_000, validation from 2_000_000, held-out test from 3_000_000.
"""

from __future__ import annotations

import numpy as np

from models.analyzers.mr_sequence import MrSequence
from models.analyzers.volume import prepare_series
from models.codes import BRAIN_NEOPLASM
from models.demo.common import FEATURE_CELLS, Recipe, mask_grid, small_densenet, stack_samples
from models.labels import BRAIN_TUMOR
from models.package import InputSpec
from models.phantoms.base import PhantomStudy
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
WHOLE_HEAD = 200  # slices, 1 mm apart, centred on the head: vertex to skull base
PER_HEAD = 8
MIN_PIXELS = 20


def _series(seed: int, rng: np.random.Generator, tumour: bool) -> tuple[PhantomStudy, int]:
    """A whole head or a short slab (every other seed), and how many slices to sample from it."""
    if seed % 2 == 0:
        matrix = int(rng.choice([128, 192]))
        return brain_mri_study(seed, tumour, slices=WHOLE_HEAD, matrix=matrix), PER_HEAD
    study = brain_mri_study(
        seed,
        tumour,
        slices=SLAB,
        first_z=float(rng.uniform(-60, 50)),
        around_tumour=tumour,
        matrix=128,
    )
    return study, PER_SLAB


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices from each series seeded ``first`` .. ``last - 1``; half of a tumour series'
    samples show the tumour."""
    spec = InputSpec.model_validate(INPUT)
    inputs, targets, masks = [], [], []
    for seed in range(first, last):
        rng = np.random.default_rng(seed)
        tumour = bool(rng.random() < 0.6)
        study, count = _series(seed, rng, tumour)
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
        candidates = list(rng.choice(len(prepared.frames), size=count, replace=False))
        if positive.size:
            candidates[: count // 2] = list(rng.choice(positive, size=count // 2))
        for index in candidates:
            inputs.append(prepared.inputs[index].astype(np.float16))
            targets.append([1.0 if areas[index] >= MIN_PIXELS else 0.0])
            mask = study.mask(BRAIN_TUMOR, prepared.frames[index].reference.sop_instance_uid)
            masks.append([mask_grid(mask, prepared.geometry, FEATURE_CELLS)])
    return stack_samples(inputs, targets, masks)


RECIPE = Recipe(
    name="brain-mri-tumor",
    revision="r6",
    description="Brain MRI (post-contrast T1), tumour per slice aggregated per study (small DenseNet)",
    pipeline="brain MRI",
    generator="models.phantoms.brain",
    unit="slice (2.5D); study = mean of the top 3 slices",
    modalities=("MR",),
    body_parts=("BRAIN", "HEAD"),
    views=(),
    sequences=(MrSequence.T1_POST.value,),  # the phantom is a post-contrast T1 only
    labels=LABELS,
    codes={BRAIN_TUMOR: BRAIN_NEOPLASM},
    tiers={BRAIN_TUMOR: "Urgent"},
    architecture=small_densenet(in_channels=3, num_outputs=len(LABELS)),
    input=INPUT,
    samples=samples,
    splits={"train": (1_000_000, 300), "validation": (2_000_000, 60), "test": (3_000_000, 80)},
    minimum_split=8,
    config=TrainingConfig(epochs=10, batch_size=32, learning_rate=4e-3, seed=13),
)
build = RECIPE.build
