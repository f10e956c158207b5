"""Demo recipe for the head CT haemorrhage analyzer (pure compute; the caller writes the package).

A training sample is one slice (with its neighbours, in three windows) of a 6-slice slab cut
from a generated head, across a bleed for most positive slabs, prepared by the analyzer's own
series preprocessing. A slice is positive for a type when that type covers at least 12
pixels of it. Seeds: training from 1_000_000, validation 2_000_000, held-out test 3_000_000.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from models.analyzers.volume import prepare_series
from models.codes import HEMORRHAGE_LABEL_CODES
from models.demo.common import DemoBuild, demo_manifest_text, generate, mask_grid
from models.networks import build_network
from models.package import ArchitectureSpec, InputSpec
from models.phantoms.head_ct import ANY, MIXED, SUBTYPES, head_ct_study
from models.training import (
    TrainingConfig,
    choose_thresholds,
    held_out_metrics,
    predict_probabilities,
    train_network,
)

NAME = "head-ct-ich"
REVISION = "r5"
LABELS = (ANY, *SUBTYPES)  # network outputs, in order
MODALITIES = ("CT",)
BODY_PARTS = ("HEAD", "BRAIN")
DESCRIPTION = (
    "Non-contrast head CT: intracranial haemorrhage and its five types (plus mixed), "
    "per series, with an estimated volume (small DenseNet, 2.5D, three windows)"
)
WINDOWS = [
    {"name": "brain", "center": 40.0, "width": 80.0},
    {"name": "subdural", "center": 80.0, "width": 200.0},
    {"name": "bone", "center": 600.0, "width": 2800.0},
]
ARCHITECTURE = {
    "family": "densenet",
    "growth_rate": 12,
    "block_config": [2, 4],
    "num_init_features": 24,
    "bn_size": 4,
    "in_channels": 9,
    "num_outputs": len(LABELS),
    "gradcam_layer": "features.norm5",
}
INPUT = {
    "size": [128, 128],
    "channels": [
        f"{where} {window['name']}" for where in ("previous", "slice", "next") for window in WINDOWS
    ],
    "windowing": "fixed",
    "windows": WINDOWS,
    "context_slices": 1,
    "value_range": [-1.0, 1.0],
    "crop": "none",
    "batch_size": 32,
}
SLAB = 6
PER_SLAB = 3
MIN_PIXELS = 12
SPLITS = {"train": (1_000_000, 600), "validation": (2_000_000, 80), "test": (3_000_000, 120)}
CELLS = 16  # final feature map of [2, 4] blocks at 128 px: 128 / 8
CONFIG = TrainingConfig(epochs=12, batch_size=32, learning_rate=4e-3, seed=17)


def label_definitions(thresholds: dict[str, float] | None = None) -> list[dict[str, Any]]:
    thresholds = thresholds or dict.fromkeys((*LABELS, MIXED), 0.5)
    entries: list[dict[str, Any]] = []
    for index, name in enumerate(LABELS):
        code = HEMORRHAGE_LABEL_CODES[name]
        entries.append(
            {
                "name": name,
                "output_index": index,
                "code": {"value": code.value, "scheme": code.scheme, "meaning": code.meaning},
                "threshold": round(float(thresholds[name]), 4),
                "tier": "Critical",
            }
        )
    code = HEMORRHAGE_LABEL_CODES[MIXED]
    entries.append(
        {
            "name": MIXED,
            "derived": {"rule": "at_least_two", "labels": list(SUBTYPES)},
            "code": {"value": code.value, "scheme": code.scheme, "meaning": code.meaning},
            "threshold": round(float(thresholds.get(MIXED, 0.5)), 4),
            "tier": "Critical",
        }
    )
    return entries


def samples(first: int, last: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = InputSpec.model_validate(INPUT)
    inputs, targets, masks = [], [], []
    for seed in range(first, last):
        rng = np.random.default_rng(seed)
        draw = rng.random()
        count = 0 if draw < 0.3 else (1 if draw < 0.8 else 2)
        kinds = [str(kind) for kind in rng.choice(np.array(SUBTYPES), size=count, replace=False)]
        study = head_ct_study(
            seed,
            kinds,
            slices=SLAB,
            first_z=float(rng.uniform(-40, 70)),
            around_bleed=bool(kinds) and rng.random() < 0.85,
            matrix=128,
        )
        prepared = prepare_series(study.datasets, spec)
        for index in rng.choice(SLAB, size=PER_SLAB, replace=False):
            uid = prepared.frames[int(index)].reference.sop_instance_uid
            row, grids = [], []
            for name in LABELS:
                mask = study.mask(name, uid)
                row.append(1.0 if mask is not None and int(mask.sum()) >= MIN_PIXELS else 0.0)
                grids.append(mask_grid(mask, prepared.geometry, CELLS))
            inputs.append(prepared.inputs[int(index)].astype(np.float16))
            targets.append(row)
            masks.append(grids)
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
    thresholds[MIXED] = 0.5
    metrics = held_out_metrics(predict_probabilities(network, test_x), test_y, LABELS, thresholds)
    manifest = {
        "name": NAME,
        "version": f"0.1.0-demo.{REVISION}",
        "analyzer": NAME,
        "description": DESCRIPTION,
        **demo_manifest_text("head CT"),
        "modalities": list(MODALITIES),
        "body_parts": list(BODY_PARTS),
        "views": [],
        "architecture": ARCHITECTURE,
        "input": INPUT,
        "labels": label_definitions(thresholds),
        "training": {
            "source": "generated",
            "recipe": f"{NAME}/{REVISION}/scale={scale}/seed={seed}",
            "generator": "models.phantoms.head_ct",
            "unit": "slice (2.5D, 3 windows); series = mean of the top 2 slices per label",
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
