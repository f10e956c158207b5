"""Demo recipe for the chest radiograph analyzer (pure compute; the caller writes the package).

Every training image is a full DICOM dataset from :mod:`models.phantoms.chest` (DX or CR,
PA or AP, MONOCHROME1 or 2, window or VOI LUT, varied anatomy) taken through the analyzer's
own preprocessing, so the network learns what it will see at inference. Seeds: training
from 1_000_000, validation (thresholds) from 2_000_000, held-out test from 3_000_000.
"""

from __future__ import annotations

import numpy as np

from models.codes import CHEST_LABEL_CODES
from models.demo.common import (
    Recipe,
    radiograph_input,
    radiograph_sample,
    small_densenet,
    stack_samples,
)
from models.labels import CHEST_LABELS
from models.package import InputSpec
from models.phantoms.chest import chest_xray_study, random_chest_findings
from models.training import TrainingConfig

LABELS = CHEST_LABELS
TIERS = {
    "Tension Pneumothorax": "Critical",
    "Pneumothorax": "Urgent",
    "Pneumonia": "Urgent",
    "Consolidation": "Urgent",
    "Edema": "Urgent",
    "Effusion": "Urgent",
    "Mass": "Urgent",
}
INPUT = radiograph_input()
RENDER_SIZE = 256


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs (float16), 0/1 targets and mask grids for the studies seeded ``first`` to ``last - 1``."""
    spec = InputSpec.model_validate(INPUT)
    inputs, targets, masks = [], [], []
    for seed in range(first, last):
        rng = np.random.default_rng(seed)
        findings = random_chest_findings(rng)
        study = chest_xray_study(
            seed,
            findings,
            views=(str(rng.choice(["PA", "PA", "AP"])),),
            modality=str(rng.choice(["DX", "CR"])),
            photometric="MONOCHROME1" if rng.random() < 0.25 else "MONOCHROME2",
            voi=str(rng.choice(["window", "window", "lut", "none"])),
            size=RENDER_SIZE,
        )
        image, target, grids = radiograph_sample(study, LABELS, spec)
        inputs.append(image)
        targets.append(target)
        masks.append(grids)
    return stack_samples(inputs, targets, masks)


RECIPE = Recipe(
    name="chest-xray",
    revision="r7",
    description="Chest radiograph, 18 findings plus tension pneumothorax (small DenseNet)",
    pipeline="chest radiograph",
    generator="models.phantoms.chest",
    modalities=("CR", "DX"),
    body_parts=("CHEST",),
    views=("PA", "AP"),
    labels=LABELS,
    codes=CHEST_LABEL_CODES,
    tiers=TIERS,
    architecture=small_densenet(in_channels=1, num_outputs=len(LABELS)),
    input=INPUT,
    samples=samples,
    splits={"train": (1_000_000, 2000), "validation": (2_000_000, 300), "test": (3_000_000, 300)},
    config=TrainingConfig(epochs=12, batch_size=32, learning_rate=4e-3, seed=7),
)
build = RECIPE.build
