"""Demo recipe for the fracture analyzer (pure compute; the caller writes the package).

One training sample is one view (AP or lateral) of a generated extremity or spine study,
with or without a fracture, taken through the analyzer's own preprocessing. Seeds: training
from 1_000_000, validation from 2_000_000, held-out test from 3_000_000.
"""

from __future__ import annotations

import numpy as np

from models.codes import FRACTURE as FRACTURE_CODE
from models.demo.common import (
    Recipe,
    radiograph_input,
    radiograph_sample,
    small_densenet,
    stack_samples,
)
from models.labels import FRACTURE
from models.package import InputSpec
from models.phantoms.msk import BODY_PARTS, msk_study
from models.training import TrainingConfig

LABELS = (FRACTURE,)
INPUT = radiograph_input()
RENDER_SIZE = 256


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = InputSpec.model_validate(INPUT)
    inputs, targets, masks = [], [], []
    for seed in range(first, last):
        rng = np.random.default_rng(seed)
        fractured = bool(rng.random() < 0.5)
        study = msk_study(
            seed,
            fractured,
            views=(str(rng.choice(["AP", "LAT"])),),
            photometric="MONOCHROME1" if rng.random() < 0.25 else "MONOCHROME2",
            size=RENDER_SIZE,
        )
        image, target, grids = radiograph_sample(study, LABELS, spec)
        inputs.append(image)
        targets.append(target)
        masks.append(grids)
    return stack_samples(inputs, targets, masks)


RECIPE = Recipe(
    name="msk-fracture",
    revision="r5",
    description="Extremity and spine radiographs, fracture per image and per study (small DenseNet)",
    pipeline="fracture radiograph",
    generator="models.phantoms.msk",
    modalities=("CR", "DX"),
    body_parts=BODY_PARTS,
    views=(),
    labels=LABELS,
    codes={FRACTURE: FRACTURE_CODE},
    tiers={FRACTURE: "Urgent"},
    architecture=small_densenet(in_channels=1, num_outputs=len(LABELS)),
    input=INPUT,
    samples=samples,
    splits={"train": (1_000_000, 1600), "validation": (2_000_000, 200), "test": (3_000_000, 300)},
    config=TrainingConfig(epochs=10, batch_size=32, learning_rate=4e-3, seed=11),
)
build = RECIPE.build
