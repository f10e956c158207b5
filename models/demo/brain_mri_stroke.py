"""Demo recipe for the diffusion MRI stroke analyzer (pure compute; the caller writes the
package).

A training sample is one slice of a 6-slice slab of a generated diffusion study (b=1000
image and ADC map, each with its neighbours), across the infarct for most stroke slabs,
prepared by the analyzer's own pairing. A slice is positive when the infarct covers at least
12 pixels of it. Seeds: training from 1_000_000, validation 2_000_000, held-out test 3_000_000.
"""

from __future__ import annotations

import numpy as np

from models.analyzers.brain_mri_stroke import prepare_pair
from models.analyzers.diffusion import select_diffusion
from models.codes import STROKE_LABEL_CODES
from models.demo.common import Recipe, slab_samples, small_densenet, stack_samples
from models.labels import ISCHEMIC_STROKE
from models.package import InputSpec
from models.phantoms.stroke import brain_mri_stroke_study
from models.training import TrainingConfig

LABELS = (ISCHEMIC_STROKE,)
INPUT = {
    "size": [128, 128],
    "channels": [
        f"{where} {kind}"
        for where in ("previous", "slice", "next")
        for kind in ("b=1000 (tissue median)", "ADC")
    ],
    "windowing": "fixed",
    "windows": [
        {"name": "b=1000 (tissue-median scaled, not windowed)", "center": 0.5, "width": 1.0},
        {"name": "ADC (x 10^-6 mm2/s)", "center": 1200.0, "width": 2400.0},
    ],
    "context_slices": 1,
    "value_range": [-1.0, 1.0],
    "crop": "none",
    "batch_size": 32,
}
SLAB = 6
PER_SLAB = 3
MIN_PIXELS = 12


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = InputSpec.model_validate(INPUT)
    inputs, targets, masks = [], [], []
    for seed in range(first, last):
        rng = np.random.default_rng(seed)
        stroke = bool(rng.random() < 0.6)
        study = brain_mri_stroke_study(
            seed, stroke, slices=SLAB, around_stroke=stroke and rng.random() < 0.85
        )
        selection = select_diffusion(study.datasets)
        assert selection.dwi is not None and selection.adc is not None
        prepared, _, _ = prepare_pair(selection.dwi, selection.adc, spec)
        slices, rows, grids = slab_samples(
            study, prepared, LABELS, rng, slab=SLAB, per_slab=PER_SLAB, min_pixels=MIN_PIXELS
        )
        inputs += slices
        targets += rows
        masks += grids
    return stack_samples(inputs, targets, masks)


RECIPE = Recipe(
    name="brain-mri-stroke",
    revision="r1",
    description=(
        "Diffusion MRI: acute ischemic stroke (restricted diffusion, b=1000 bright and ADC "
        "dark), with infarct volume and ASPECTS-style regions (small DenseNet, 2.5D)"
    ),
    pipeline="brain MRI stroke",
    generator="models.phantoms.stroke",
    unit="slice (2.5D, b=1000 and ADC); study = mean of the top 2 slices",
    modalities=("MR",),
    body_parts=("BRAIN", "HEAD"),
    views=(),
    labels=LABELS,
    codes=STROKE_LABEL_CODES,
    tiers={ISCHEMIC_STROKE: "Critical"},
    architecture=small_densenet(in_channels=6, num_outputs=len(LABELS)),
    input=INPUT,
    samples=samples,
    splits={"train": (1_000_000, 240), "validation": (2_000_000, 40), "test": (3_000_000, 60)},
    minimum_split=8,
    config=TrainingConfig(epochs=8, batch_size=32, learning_rate=4e-3, seed=29),
)
build = RECIPE.build
