"""Demo recipe for the chest radiograph analyzer (pure compute; the caller writes the package).

Every training image is a full DICOM dataset from :mod:`models.phantoms.chest` (DX or CR,
PA or AP, MONOCHROME1 or 2, window or VOI LUT, varied anatomy) taken through the analyzer's
own preprocessing, so the network learns what it will see at inference. Seeds: training
from 1_000_000, validation (thresholds) from 2_000_000, held-out test from 3_000_000.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.analyzers.radiograph import prepare_radiograph
from models.codes import CHEST_LABEL_CODES
from models.demo.common import DemoBuild, demo_manifest_text, generate, label_entries, mask_grid
from models.labels import CHEST_LABELS
from models.networks import build_network
from models.package import ArchitectureSpec, InputSpec
from models.phantoms.chest import chest_xray_study, random_chest_findings
from models.training import (
    TrainingConfig,
    choose_thresholds,
    held_out_metrics,
    predict_probabilities,
    train_network,
)

NAME = "chest-xray"
REVISION = "r7"
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
ARCHITECTURE = {
    "family": "densenet",
    "growth_rate": 12,
    "block_config": [2, 4],
    "num_init_features": 16,
    "bn_size": 4,
    "in_channels": 1,
    "num_outputs": len(LABELS),
    "gradcam_layer": "features.norm5",
}
INPUT = {
    "size": [128, 128],
    "channels": ["image"],
    "windowing": "dicom",
    "value_range": [-1.0, 1.0],
    "crop": "center_square",
    "batch_size": 16,
}
MODALITIES = ("CR", "DX")
BODY_PARTS = ("CHEST",)
VIEWS = ("PA", "AP")
DESCRIPTION = "Chest radiograph, 18 findings plus tension pneumothorax (small DenseNet)"
RENDER_SIZE = 256
SPLITS = {"train": (1_000_000, 2000), "validation": (2_000_000, 300), "test": (3_000_000, 300)}
CELLS = 16  # final feature map of [2, 4] blocks at 128 px: 128 / 8
CONFIG = TrainingConfig(epochs=12, batch_size=32, learning_rate=4e-3, seed=7)


def label_definitions(thresholds: dict[str, float] | None = None) -> list[dict[str, Any]]:
    return label_entries(LABELS, CHEST_LABEL_CODES, TIERS, thresholds or dict.fromkeys(LABELS, 0.5))


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs (float16) and 0/1 targets for the studies seeded ``first`` to ``last - 1``."""
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
        prepared = prepare_radiograph(study.datasets[0], spec)[0]
        inputs.append(prepared.inputs.astype(np.float16))
        targets.append([1.0 if label in study.labels else 0.0 for label in LABELS])
        uid = str(study.datasets[0].SOPInstanceUID)
        masks.append(
            [mask_grid(study.mask(label, uid), prepared.geometry, CELLS) for label in LABELS]
        )
    return (
        np.stack(inputs),
        np.asarray(targets, dtype=np.float32),
        np.asarray(masks, dtype=np.uint8),
    )


def build(scale: float = 1.0, seed: int = 0, workers: int | None = None) -> DemoBuild:
    """Train the demo chest network; ``scale`` < 1 shrinks data and epochs (tests)."""

    def split(name: str) -> tuple[np.ndarray, ...]:
        start, count = SPLITS[name]
        return generate(samples, start + seed * 10_000, max(16, int(count * scale)), workers)

    train_x, train_y, train_masks = split("train")
    validation_x, validation_y, _ = split("validation")
    test_x, test_y, _ = split("test")
    torch.manual_seed(CONFIG.seed + seed)  # the initial weights are part of the recipe
    network = build_network(ArchitectureSpec.model_validate(ARCHITECTURE))
    config = TrainingConfig(
        epochs=max(1, round(CONFIG.epochs * min(1.0, scale * 4))),
        batch_size=CONFIG.batch_size,
        learning_rate=CONFIG.learning_rate,
        seed=CONFIG.seed + seed,
        attention_weight=CONFIG.attention_weight,
    )
    report = train_network(network, train_x, train_y, config, masks=train_masks)
    thresholds = choose_thresholds(
        predict_probabilities(network, validation_x), validation_y, LABELS
    )
    metrics = held_out_metrics(predict_probabilities(network, test_x), test_y, LABELS, thresholds)
    manifest = {
        "name": NAME,
        "version": f"0.1.0-demo.{REVISION}",
        "analyzer": NAME,
        "description": DESCRIPTION,
        **demo_manifest_text("chest radiograph"),
        "modalities": list(MODALITIES),
        "body_parts": list(BODY_PARTS),
        "views": list(VIEWS),
        "architecture": ARCHITECTURE,
        "input": INPUT,
        "labels": label_definitions(thresholds),
        "training": {
            "source": "generated",
            "recipe": f"{NAME}/{REVISION}/scale={scale}/seed={seed}",
            "generator": "models.phantoms.chest",
            "samples": {
                "train": len(train_x),
                "validation": len(validation_x),
                "test": len(test_x),
            },
            "epochs": config.epochs,
            "attention_guidance": f"CAM share outside the lesion masks, weight {config.attention_weight}",
            "seconds": round(report.seconds, 1),
            "final_loss": round(report.final_loss, 4),
            "held_out": metrics,
        },
    }
    return DemoBuild(manifest, network.state_dict(), {"metrics": metrics})
