"""Pieces every demo recipe shares: parallel sample generation, manifest text (pure).

Samples are generated in worker processes in fixed seed chunks; the result depends only on the
seeds, never on the worker count. Workers are forked on Linux (as torch's own DataLoader does:
torch resets its thread pool in a forked child), so no script needs a ``__main__`` guard.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from models.package import DEMO_NOTICE
from models.preprocess import Geometry
from models.runtime import available_cpus

CHUNK = 64
log = logging.getLogger(__name__)


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


def label_entries(
    names: Sequence[str],
    codes: dict[str, Any],
    tiers: dict[str, str],
    thresholds: dict[str, float],
) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "output_index": index,
            "code": {
                "value": codes[name].value,
                "scheme": codes[name].scheme,
                "meaning": codes[name].meaning,
            },
            "threshold": round(float(thresholds[name]), 4),
            "tier": tiers.get(name, "Routine"),
        }
        for index, name in enumerate(names)
    ]
