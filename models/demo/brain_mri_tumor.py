"""Demo recipe for the brain MRI tumour analyzer (pure compute; the caller writes the package).

A training sample is one slice (with its neighbours) of a 16-slice slab cut from a generated
head at a random height, prepared by the analyzer's own series preprocessing; it is positive
when the tumour covers at least 20 pixels of that slice. Seeds: training from 1_000_000,
validation from 2_000_000, held-out test from 3_000_000.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.analyzers.volume import prepare_series
from models.codes import BRAIN_NEOPLASM
from models.demo.common import DemoBuild, demo_manifest_text, generate, label_entries, mask_grid
from models.networks import build_network
from models.package import ArchitectureSpec, InputSpec
from models.phantoms.brain import LABEL, brain_mri_study
from models.training import (
    TrainingConfig,
    choose_thresholds,
    held_out_metrics,
    predict_probabilities,
    train_network,
)

NAME = "brain-mri-tumor"
REVISION = "r5"
LABELS = (LABEL,)
TIERS = {LABEL: "Urgent"}
MODALITIES = ("MR",)
BODY_PARTS = ("BRAIN", "HEAD")
DESCRIPTION = "Brain MRI (post-contrast T1), tumour per slice aggregated per study (small DenseNet)"
ARCHITECTURE = {
    "family": "densenet",
    "growth_rate": 12,
    "block_config": [2, 4],
    "num_init_features": 16,
    "bn_size": 4,
    "in_channels": 3,
    "num_outputs": len(LABELS),
    "gradcam_layer": "features.norm5",
}
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
SPLITS = {"train": (1_000_000, 400), "validation": (2_000_000, 60), "test": (3_000_000, 80)}
CELLS = 16  # final feature map of [2, 4] blocks at 128 px: 128 / 8
CONFIG = TrainingConfig(epochs=10, batch_size=32, learning_rate=4e-3, seed=13)


def label_definitions(thresholds: dict[str, float] | None = None) -> list[dict[str, Any]]:
    return label_entries(
        LABELS, {LABEL: BRAIN_NEOPLASM}, TIERS, thresholds or dict.fromkeys(LABELS, 0.5)
    )


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
                if (m := study.mask(LABEL, frame.reference.sop_instance_uid)) is not None
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
            mask = study.mask(LABEL, prepared.frames[index].reference.sop_instance_uid)
            masks.append([mask_grid(mask, prepared.geometry, CELLS)])
    return (
        np.stack(inputs),
        np.asarray(targets, dtype=np.float32),
        np.asarray(masks, dtype=np.uint8),
    )


def build(scale: float = 1.0, seed: int = 0, workers: int | None = None) -> DemoBuild:
    def split(name: str) -> tuple[np.ndarray, ...]:
        start, count = SPLITS[name]
        return generate(samples, start + seed * 10_000, max(8, int(count * scale)), workers)

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
        **demo_manifest_text("brain MRI"),
        "modalities": list(MODALITIES),
        "body_parts": list(BODY_PARTS),
        "views": [],
        "architecture": ARCHITECTURE,
        "input": INPUT,
        "labels": label_definitions(thresholds),
        "training": {
            "source": "generated",
            "recipe": f"{NAME}/{REVISION}/scale={scale}/seed={seed}",
            "generator": "models.phantoms.brain",
            "unit": "slice (2.5D); study = mean of the top 3 slices",
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
