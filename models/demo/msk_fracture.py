"""Demo recipe for the fracture analyzer (pure compute; the caller writes the package).

One training sample is one view (AP or lateral) of a generated extremity or spine study,
with or without a fracture, taken through the analyzer's own preprocessing. Seeds: training
from 1_000_000, validation from 2_000_000, held-out test from 3_000_000.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.analyzers.radiograph import prepare_radiograph
from models.codes import FRACTURE
from models.demo.common import DemoBuild, demo_manifest_text, generate, label_entries, mask_grid
from models.networks import build_network
from models.package import ArchitectureSpec, InputSpec
from models.phantoms.msk import BODY_PARTS as PHANTOM_BODY_PARTS
from models.phantoms.msk import msk_study
from models.training import (
    TrainingConfig,
    choose_thresholds,
    held_out_metrics,
    predict_probabilities,
    train_network,
)

NAME = "msk-fracture"
REVISION = "r5"
LABELS = ("Fracture",)
TIERS = {"Fracture": "Urgent"}
MODALITIES = ("CR", "DX")
BODY_PARTS = PHANTOM_BODY_PARTS
DESCRIPTION = "Extremity and spine radiographs, fracture per image and per study (small DenseNet)"
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
RENDER_SIZE = 256
SPLITS = {"train": (1_000_000, 1600), "validation": (2_000_000, 200), "test": (3_000_000, 300)}
CELLS = 16  # final feature map of [2, 4] blocks at 128 px: 128 / 8
CONFIG = TrainingConfig(epochs=10, batch_size=32, learning_rate=4e-3, seed=11)


def label_definitions(thresholds: dict[str, float] | None = None) -> list[dict[str, Any]]:
    return label_entries(
        LABELS, {"Fracture": FRACTURE}, TIERS, thresholds or dict.fromkeys(LABELS, 0.5)
    )


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
        prepared = prepare_radiograph(study.datasets[0], spec)[0]
        inputs.append(prepared.inputs.astype(np.float16))
        targets.append([1.0 if fractured else 0.0])
        mask = study.mask("Fracture", str(study.datasets[0].SOPInstanceUID))
        masks.append([mask_grid(mask, prepared.geometry, CELLS)])
    return (
        np.stack(inputs),
        np.asarray(targets, dtype=np.float32),
        np.asarray(masks, dtype=np.uint8),
    )


def build(scale: float = 1.0, seed: int = 0, workers: int | None = None) -> DemoBuild:
    def split(name: str) -> tuple[np.ndarray, ...]:
        start, count = SPLITS[name]
        return generate(samples, start + seed * 10_000, max(16, int(count * scale)), workers)

    train_x, train_y, train_masks = split("train")
    validation_x, validation_y, _ = split("validation")
    test_x, test_y, _ = split("test")
    torch.manual_seed(CONFIG.seed + seed)
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
        **demo_manifest_text("fracture radiograph"),
        "modalities": list(MODALITIES),
        "body_parts": list(BODY_PARTS),
        "views": [],
        "architecture": ARCHITECTURE,
        "input": INPUT,
        "labels": label_definitions(thresholds),
        "training": {
            "source": "generated",
            "recipe": f"{NAME}/{REVISION}/scale={scale}/seed={seed}",
            "generator": "models.phantoms.msk",
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
