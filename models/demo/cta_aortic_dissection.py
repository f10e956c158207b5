"""Demo recipe for the CTA aortic dissection analyzer (pure compute; the caller writes the
package).

A training sample is one slice (with its neighbours, in angiographic and soft-tissue windows)
of a 6-slice slab cut from a generated CT angiogram (no dissection, type A or type B). A
slice is positive for a label when its flap covers at least 4 pixels: "Aortic dissection"
for a flap anywhere, the type A output for a flap in the ascending aorta or arch, the type B
output for a flap in the descending aorta. Seeds: training from 1_000_000, validation
2_000_000, held-out test 3_000_000.
"""

from __future__ import annotations

import numpy as np

from models.analyzers.volume import prepare_series
from models.codes import DISSECTION_LABEL_CODES
from models.demo.common import Recipe, slab_input, slab_samples, small_densenet, stack_samples
from models.labels import AORTIC_DISSECTION, STANFORD_TYPE_A, STANFORD_TYPE_B
from models.package import InputSpec
from models.phantoms.aorta import cta_aorta_study
from models.training import TrainingConfig

LABELS = (AORTIC_DISSECTION, STANFORD_TYPE_A, STANFORD_TYPE_B)
WINDOWS = [
    {"name": "angio", "center": 300.0, "width": 600.0},
    {"name": "soft tissue", "center": 40.0, "width": 400.0},
]
INPUT = slab_input(WINDOWS)
SLAB = 6
PER_SLAB = 3
MIN_PIXELS = 4


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = InputSpec.model_validate(INPUT)
    inputs, targets, masks = [], [], []
    for seed in range(first, last):
        rng = np.random.default_rng(seed)
        draw = rng.random()
        stanford = None if draw < 0.4 else ("A" if draw < 0.7 else "B")
        study = cta_aorta_study(seed, stanford, slices=SLAB, top_z=float(rng.uniform(-80, 80)))
        prepared = prepare_series(study.datasets, spec)
        slices, rows, grids = slab_samples(
            study, prepared, LABELS, rng, slab=SLAB, per_slab=PER_SLAB, min_pixels=MIN_PIXELS
        )
        inputs += slices
        targets += rows
        masks += grids
    return stack_samples(inputs, targets, masks)


RECIPE = Recipe(
    name="cta-aortic-dissection",
    revision="r1",
    description=(
        "CT angiography of the thoracic aorta: intimal flap, Stanford type A or B, maximum "
        "aortic diameter (small DenseNet, 2.5D, two windows)"
    ),
    pipeline="CT angiography aorta",
    generator="models.phantoms.aorta",
    unit=(
        "slice (2.5D, 2 windows): flap anywhere / in the ascending aorta or arch / in the "
        "descending aorta; series = mean of the top 2 slices per output"
    ),
    modalities=("CT",),
    body_parts=("CHEST", "AORTA"),
    views=(),
    labels=LABELS,
    codes=DISSECTION_LABEL_CODES,
    tiers=dict.fromkeys(LABELS, "Critical"),
    architecture=small_densenet(in_channels=6, num_outputs=len(LABELS)),
    input=INPUT,
    samples=samples,
    splits={"train": (1_000_000, 400), "validation": (2_000_000, 60), "test": (3_000_000, 60)},
    minimum_split=8,
    config=TrainingConfig(epochs=12, batch_size=32, learning_rate=3e-3, seed=31),
)
build = RECIPE.build
