"""Demo recipe for the head CT stroke analyzer (pure compute; the caller writes the package).

A training sample is one slice (with its neighbours, in the haemorrhage analyzer's three
windows) of a 6-slice slab cut from a generated head, across the infarct for most stroke
slabs, prepared by the analyzer's own series preprocessing. A slice is positive for early
ischemic change when the infarct covers at least 30 pixels of it, for the dense vessel sign
at 4 pixels. Seeds: training from 1_000_000, validation 2_000_000, held-out test 3_000_000.
"""

from __future__ import annotations

import numpy as np

from models.analyzers.volume import prepare_series
from models.codes import STROKE_LABEL_CODES
from models.demo.common import Recipe, slab_samples, small_densenet, stack_samples
from models.demo.head_ct_ich import INPUT
from models.labels import DENSE_VESSEL_SIGN, ISCHEMIC_STROKE
from models.package import InputSpec
from models.phantoms.stroke import head_ct_stroke_study
from models.training import TrainingConfig

LABELS = (ISCHEMIC_STROKE, DENSE_VESSEL_SIGN)
SLAB = 6
PER_SLAB = 3
MIN_PIXELS = {ISCHEMIC_STROKE: 30, DENSE_VESSEL_SIGN: 4}


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = InputSpec.model_validate(INPUT)
    inputs, targets, masks = [], [], []
    for seed in range(first, last):
        rng = np.random.default_rng(seed)
        stroke = bool(rng.random() < 0.6)
        study = head_ct_stroke_study(
            seed,
            stroke,
            slices=SLAB,
            matrix=128,
            around_stroke=stroke and rng.random() < 0.85,
            first_z=None if stroke else float(rng.uniform(-50, 70)),
        )
        prepared = prepare_series(study.datasets, spec)
        slices, rows, grids = slab_samples(
            study, prepared, LABELS, rng, slab=SLAB, per_slab=PER_SLAB, min_pixels=MIN_PIXELS
        )
        inputs += slices
        targets += rows
        masks += grids
    return stack_samples(inputs, targets, masks)


RECIPE = Recipe(
    name="head-ct-stroke",
    revision="r1",
    description=(
        "Non-contrast head CT: acute ischemic stroke (early ischemic change) and the dense "
        "MCA sign, per series, with infarct volume and ASPECTS-style regions (small DenseNet, "
        "2.5D, three windows)"
    ),
    pipeline="head CT stroke",
    generator="models.phantoms.stroke",
    unit="slice (2.5D, 3 windows); series = mean of the top 2 slices per label",
    modalities=("CT",),
    body_parts=("HEAD", "BRAIN"),
    views=(),
    labels=LABELS,
    codes=STROKE_LABEL_CODES,
    tiers=dict.fromkeys(LABELS, "Critical"),
    architecture=small_densenet(in_channels=9, num_outputs=len(LABELS)),
    input=INPUT,
    samples=samples,
    splits={"train": (1_000_000, 300), "validation": (2_000_000, 50), "test": (3_000_000, 60)},
    minimum_split=8,
    config=TrainingConfig(epochs=8, batch_size=32, learning_rate=4e-3, seed=23),
)
build = RECIPE.build
