"""Pieces every demo recipe shares: parallel sample generation, manifest text (pure).

Samples are generated in worker processes in fixed seed chunks; the result depends only on the
seeds, never on the worker count. Workers are forked on Linux (as torch's own DataLoader does:
torch resets its thread pool in a forked child), so no script needs a ``__main__`` guard.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.package import DEMO_NOTICE
from models.runtime import available_cpus

CHUNK = 64


@dataclass
class DemoBuild:
    """What a recipe hands back: the manifest (without weights hash) and the trained tensors."""

    manifest: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    report: dict[str, Any] = field(default_factory=dict)


def _worker_init() -> None:
    torch.set_num_threads(1)


def generate(
    function: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    start: int,
    count: int,
    workers: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run ``function(first_seed, last_seed)`` over ``count`` seeds, in chunks, maybe in parallel."""
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
    inputs = np.concatenate([part[0] for part in parts])
    targets = np.concatenate([part[1] for part in parts])
    return inputs, targets


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
