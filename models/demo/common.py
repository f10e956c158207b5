"""What every demo recipe shares: the training sequence, parallel sample generation, manifest.

A recipe (one module per analyzer) declares a :class:`Recipe`: its labels, network, input,
splits and the function that turns seeds into samples. :meth:`Recipe.build` then runs the
same sequence for all four: generate the train / validation / test splits, train with the
lesion masks as attention guidance, choose each label's threshold on validation, measure on
the held-out split, and assemble the manifest (pure compute; the caller writes the package).

Samples are generated in worker processes in fixed seed chunks; the result depends only on the
seeds, never on the worker count. Workers are forked on Linux (as torch's own DataLoader does:
torch resets its thread pool in a forked child), so no script needs a ``__main__`` guard.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from models.analyzers.radiograph import prepare_radiograph
from models.networks import build_network
from models.package import DEMO_NOTICE, ArchitectureSpec, InputSpec
from models.phantoms.base import PhantomStudy
from models.preprocess import Geometry
from models.results import CodedConcept
from models.runtime import available_cpus
from models.training import (
    TrainingConfig,
    choose_thresholds,
    held_out_metrics,
    predict_probabilities,
    train_network,
)

CHUNK = 64
FEATURE_CELLS = 16  # final feature map of the small networks' [2, 4] blocks at 128 px: 128 / 8
DERIVED_THRESHOLD = 0.5  # a derived label ("at least two of") is not fitted: its threshold is fixed
log = logging.getLogger(__name__)

Samples = Callable[[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class DemoBuild:
    """What a recipe hands back: the manifest (without weights hash) and the trained tensors."""

    manifest: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    report: dict[str, Any] = field(default_factory=dict)


def _worker_init() -> None:
    torch.set_num_threads(1)


def generate(
    function: Callable[[int, int], tuple[np.ndarray, ...]],
    start: int,
    count: int,
    workers: int | None = None,
) -> tuple[np.ndarray, ...]:
    """Run ``function(first_seed, last_seed)`` over ``count`` seeds, in chunks, maybe in parallel."""
    started = time.perf_counter()
    chunks = [
        (first, min(first + CHUNK, start + count)) for first in range(start, start + count, CHUNK)
    ]
    workers = min(workers or available_cpus(), len(chunks))
    if workers <= 1:
        parts = [function(first, last) for first, last in chunks]
    else:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        context = multiprocessing.get_context(method)
        with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
            parts = list(pool.map(function, *zip(*chunks, strict=True)))
    arrays = tuple(np.concatenate([part[k] for part in parts]) for k in range(len(parts[0])))
    log.info(
        "generated %d samples from %d seeds in %.1f s (%d workers)",
        len(arrays[0]),
        count,
        time.perf_counter() - started,
        workers,
    )
    return arrays


def mask_grid(mask: np.ndarray | None, geometry: Geometry, cells: int) -> np.ndarray:
    """A lesion mask as the final feature map sees it: cropped like the image, any lesion
    pixel marks its cell, dilated by one cell (the map is 1/16 of the field: evidence at a
    thin lesion's edge, a pleural line or a meniscus, sits in the neighbouring cell);
    uint8 cells x cells."""
    grid = np.zeros((cells, cells), dtype=np.uint8)
    if mask is None or not mask.any():
        return grid
    cropped = mask[
        geometry.top : geometry.top + geometry.height,
        geometry.left : geometry.left + geometry.width,
    ]
    rows = np.minimum((np.arange(cropped.shape[0]) * cells) // cropped.shape[0], cells - 1)
    columns = np.minimum((np.arange(cropped.shape[1]) * cells) // cropped.shape[1], cells - 1)
    hit_rows, hit_columns = np.nonzero(cropped)
    grid[rows[hit_rows], columns[hit_columns]] = 1
    return ndimage.binary_dilation(grid, iterations=1).astype(np.uint8)


def stack_samples(
    inputs: Sequence[np.ndarray], targets: Sequence[Sequence[float]], masks: Sequence[Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A recipe's samples as arrays: inputs (as given), 0/1 targets (float32), mask grids (uint8)."""
    return (
        np.stack(inputs),
        np.asarray(targets, dtype=np.float32),
        np.asarray(masks, dtype=np.uint8),
    )


def slab_input(windows: list[dict[str, Any]]) -> dict[str, Any]:
    """The 2.5D input of the volume recipes: each window of the slice and its two neighbours."""
    return {
        "size": [128, 128],
        "channels": [
            f"{where} {window['name']}"
            for where in ("previous", "slice", "next")
            for window in windows
        ],
        "windowing": "fixed",
        "windows": windows,
        "context_slices": 1,
        "value_range": [-1.0, 1.0],
        "crop": "none",
        "batch_size": 32,
    }


def slab_samples(
    study: PhantomStudy,
    prepared: Any,
    labels: Sequence[str],
    rng: np.random.Generator,
    *,
    slab: int,
    per_slab: int,
    min_pixels: int | Mapping[str, int],
) -> tuple[list[np.ndarray], list[list[float]], list[list[np.ndarray]]]:
    """``per_slab`` random slices of a prepared slab: input, 0/1 target per label (a label is
    present when its mask has at least ``min_pixels``), and the mask grids for Grad-CAM."""
    inputs, targets, masks = [], [], []
    for index in rng.choice(slab, size=per_slab, replace=False):
        uid = prepared.frames[int(index)].reference.sop_instance_uid
        row, grids = [], []
        for name in labels:
            mask = study.mask(name, uid)
            least = min_pixels if isinstance(min_pixels, int) else min_pixels[name]
            row.append(1.0 if mask is not None and int(mask.sum()) >= least else 0.0)
            grids.append(mask_grid(mask, prepared.geometry, FEATURE_CELLS))
        inputs.append(prepared.inputs[int(index)].astype(np.float16))
        targets.append(row)
        masks.append(grids)
    return inputs, targets, masks


def radiograph_sample(
    study: PhantomStudy, labels: Sequence[str], spec: InputSpec
) -> tuple[np.ndarray, list[float], list[np.ndarray]]:
    """The first image of a radiograph phantom as the analyzer prepares it (float16), its 0/1
    targets and a mask grid per label."""
    dataset = study.datasets[0]
    prepared = prepare_radiograph(dataset, spec)[0]
    uid = str(dataset.SOPInstanceUID)
    return (
        prepared.inputs.astype(np.float16),
        [1.0 if label in study.labels else 0.0 for label in labels],
        [mask_grid(study.mask(label, uid), prepared.geometry, FEATURE_CELLS) for label in labels],
    )


def small_densenet(
    in_channels: int, num_outputs: int, *, num_init_features: int = 16
) -> dict[str, Any]:
    """The demo networks' architecture: a DenseNet-BC with two short blocks (16 x 16 at 128 px)."""
    return {
        "family": "densenet",
        "growth_rate": 12,
        "block_config": [2, 4],
        "num_init_features": num_init_features,
        "bn_size": 4,
        "in_channels": in_channels,
        "num_outputs": num_outputs,
        "gradcam_layer": "features.norm5",
    }


def radiograph_input() -> dict[str, Any]:
    """Input of the radiograph demo networks: the image's own window, centre square, 128 px."""
    return {
        "size": [128, 128],
        "channels": ["image"],
        "windowing": "dicom",
        "value_range": [-1.0, 1.0],
        "crop": "center_square",
        "batch_size": 16,
    }


def demo_manifest_text(kind: str) -> dict[str, Any]:
    return {
        "manufacturer": "pacsflow",
        "clinical_use": False,
        "notice": DEMO_NOTICE,
        "intended_use": (
            f"Demonstration of the pacsflow {kind} pipeline only: {DEMO_NOTICE}. "
            "Findings are meaningless on real patients."
        ),
    }


def code_entry(code: CodedConcept) -> dict[str, str]:
    return {"value": code.value, "scheme": code.scheme, "meaning": code.meaning}


def label_entries(
    names: Sequence[str],
    codes: Mapping[str, CodedConcept],
    tiers: Mapping[str, str],
    thresholds: Mapping[str, float],
    derived: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Manifest label entries: one per network output (in order), then the derived labels
    (present when at least two of their labels are)."""
    outputs = [
        {
            "name": name,
            "output_index": index,
            "code": code_entry(codes[name]),
            "threshold": round(float(thresholds[name]), 4),
            "tier": tiers.get(name, "Routine"),
        }
        for index, name in enumerate(names)
    ]
    return outputs + [
        {
            "name": name,
            "derived": {"rule": "at_least_two", "labels": list(labels)},
            "code": code_entry(codes[name]),
            "threshold": round(float(thresholds.get(name, DERIVED_THRESHOLD)), 4),
            "tier": tiers.get(name, "Routine"),
        }
        for name, labels in (derived or {}).items()
    ]


@dataclass(frozen=True)
class Recipe:
    """One analyzer's demo training: what differs between the four; :meth:`build` runs it."""

    name: str  # package and analyzer name
    revision: str  # bumped whenever the recipe's output changes (older packages are retrained)
    description: str
    pipeline: str  # as the intended-use text names it: "the pacsflow {pipeline} pipeline"
    generator: str  # the phantom module the samples come from
    modalities: tuple[str, ...]
    body_parts: tuple[str, ...]
    views: tuple[str, ...]
    labels: tuple[str, ...]  # network outputs, in order
    codes: Mapping[str, CodedConcept]
    tiers: Mapping[str, str]  # label -> urgency tier; "Routine" when absent
    architecture: dict[str, Any]
    input: dict[str, Any]
    samples: Samples  # (first seed, last seed) -> inputs, targets, mask grids
    splits: Mapping[str, tuple[int, int]]  # "train" / "validation" / "test" -> first seed, count
    config: TrainingConfig
    minimum_split: int = 16  # the fewest samples a split is cut to at small scales
    unit: str | None = None  # what one sample is, when it is not one image of a study
    derived: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    sequences: tuple[str, ...] = ()  # MR sequences the samples are drawn as, preferred first

    def label_definitions(
        self, thresholds: Mapping[str, float] | None = None
    ) -> list[dict[str, Any]]:
        """The manifest's labels, every threshold 0.5 unless given."""
        if thresholds is None:
            thresholds = dict.fromkeys((*self.labels, *self.derived), 0.5)
        return label_entries(self.labels, self.codes, self.tiers, thresholds, self.derived)

    def build(self, scale: float = 1.0, seed: int = 0, workers: int | None = None) -> DemoBuild:
        """Train the demo network; ``scale`` < 1 shrinks data and epochs (tests)."""

        def split(name: str) -> tuple[np.ndarray, ...]:
            start, count = self.splits[name]
            size = max(self.minimum_split, int(count * scale))
            return generate(self.samples, start + seed * 10_000, size, workers)

        train_x, train_y, train_masks = split("train")
        validation_x, validation_y, _ = split("validation")
        test_x, test_y, _ = split("test")
        torch.manual_seed(self.config.seed + seed)  # the initial weights are part of the recipe
        network = build_network(ArchitectureSpec.model_validate(self.architecture))
        config = TrainingConfig(
            epochs=max(1, round(self.config.epochs * min(1.0, scale * 4))),
            batch_size=self.config.batch_size,
            learning_rate=self.config.learning_rate,
            seed=self.config.seed + seed,
            attention_weight=self.config.attention_weight,
        )
        report = train_network(network, train_x, train_y, config, masks=train_masks)
        thresholds = choose_thresholds(
            predict_probabilities(network, validation_x), validation_y, self.labels
        )
        thresholds.update(dict.fromkeys(self.derived, DERIVED_THRESHOLD))
        metrics = held_out_metrics(
            predict_probabilities(network, test_x), test_y, self.labels, thresholds
        )
        manifest = {
            "name": self.name,
            "version": f"0.1.0-demo.{self.revision}",
            "analyzer": self.name,
            "description": self.description,
            **demo_manifest_text(self.pipeline),
            "modalities": list(self.modalities),
            "body_parts": list(self.body_parts),
            "views": list(self.views),
            "sequences": list(self.sequences),
            "architecture": self.architecture,
            "input": self.input,
            "labels": self.label_definitions(thresholds),
            "training": {
                "source": "generated",
                "recipe": f"{self.name}/{self.revision}/scale={scale}/seed={seed}",
                "generator": self.generator,
                **({"unit": self.unit} if self.unit is not None else {}),
                "samples": {
                    "train": len(train_x),
                    "validation": len(validation_x),
                    "test": len(test_x),
                },
                "epochs": config.epochs,
                "attention_guidance": (
                    f"CAM share outside the lesion masks, weight {config.attention_weight}"
                ),
                "seconds": round(report.seconds, 1),
                "final_loss": round(report.final_loss, 4),
                "held_out": metrics,
            },
        }
        return DemoBuild(manifest, network.state_dict(), {"metrics": metrics})
