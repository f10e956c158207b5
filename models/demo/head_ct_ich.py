"""Demo recipe for the head CT haemorrhage analyzer (pure compute; the caller writes the package).

A training sample is one slice (with its neighbours, in three windows) of a 6-slice slab cut
from a generated head, across a bleed for most positive slabs, prepared by the analyzer's own
series preprocessing. A slice is positive for a type when that type covers at least 12
pixels of it. Seeds: training from 1_000_000, validation 2_000_000, held-out test 3_000_000.
"""

from __future__ import annotations

import numpy as np

from models.analyzers.volume import prepare_series
from models.codes import HEMORRHAGE_LABEL_CODES
from models.demo.common import Recipe, slab_input, slab_samples, small_densenet, stack_samples
from models.labels import ANY_HEMORRHAGE, HEMORRHAGE_SUBTYPES, MIXED_HEMORRHAGE
from models.package import InputSpec
from models.phantoms.head_ct import head_ct_study
from models.training import TrainingConfig

LABELS = (ANY_HEMORRHAGE, *HEMORRHAGE_SUBTYPES)  # network outputs, in order
WINDOWS = [
    {"name": "brain", "center": 40.0, "width": 80.0},
    {"name": "subdural", "center": 80.0, "width": 200.0},
    {"name": "bone", "center": 600.0, "width": 2800.0},
]
INPUT = slab_input(WINDOWS)
SLAB = 6
PER_SLAB = 3
MIN_PIXELS = 12


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = InputSpec.model_validate(INPUT)
    inputs, targets, masks = [], [], []
    for seed in range(first, last):
        rng = np.random.default_rng(seed)
        draw = rng.random()
        count = 0 if draw < 0.3 else (1 if draw < 0.8 else 2)
        kinds = [
            str(kind)
            for kind in rng.choice(np.array(HEMORRHAGE_SUBTYPES), size=count, replace=False)
        ]
        study = head_ct_study(
            seed,
            kinds,
            slices=SLAB,
            first_z=float(rng.uniform(-40, 70)),
            around_bleed=bool(kinds) and rng.random() < 0.85,
            matrix=128,
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
    name="head-ct-ich",
    revision="r5",
    description=(
        "Non-contrast head CT: intracranial haemorrhage and its five types (plus mixed), "
        "per series, with an estimated volume (small DenseNet, 2.5D, three windows)"
    ),
    pipeline="head CT",
    generator="models.phantoms.head_ct",
    unit="slice (2.5D, 3 windows); series = mean of the top 2 slices per label",
    modalities=("CT",),
    body_parts=("HEAD", "BRAIN"),
    views=(),
    labels=LABELS,
    codes=HEMORRHAGE_LABEL_CODES,
    tiers=dict.fromkeys((*LABELS, MIXED_HEMORRHAGE), "Critical"),
    derived={MIXED_HEMORRHAGE: HEMORRHAGE_SUBTYPES},
    architecture=small_densenet(in_channels=9, num_outputs=len(LABELS), num_init_features=24),
    input=INPUT,
    samples=samples,
    splits={"train": (1_000_000, 600), "validation": (2_000_000, 80), "test": (3_000_000, 120)},
    minimum_split=8,
    config=TrainingConfig(epochs=12, batch_size=32, learning_rate=4e-3, seed=17),
)
build = RECIPE.build
