"""Where and how networks run: device choice, CPU threads, batched inference (pure: no I/O).

``auto`` picks CUDA when torch sees a GPU, else the CPU. On CUDA, inference runs under
autocast (float16 matmuls and convolutions, float32 accumulation); on the CPU, torch uses as
many intra-op threads as this process may run on (``os.sched_getaffinity``), which on a
container limited to 2 cores is 2, not the host's count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import numpy as np
import torch
from torch import nn

_configured = threading.Lock()
_threads_set = False


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def configure_cpu_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads once per process (explicit value, else available CPUs)."""
    global _threads_set
    with _configured:
        wanted = threads or int(os.environ.get("PACSFLOW_TORCH_THREADS", "0")) or available_cpus()
        if not _threads_set or threads:
            torch.set_num_threads(wanted)
            _threads_set = True
        return torch.get_num_threads()


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    return resolved


@contextmanager
def autocast_for(device: torch.device) -> Iterator[None]:
    context = (
        torch.autocast(device_type="cuda", dtype=torch.float16)
        if device.type == "cuda"
        else nullcontext()
    )
    with context:
        yield


def predict_logits_and_features(
    network: nn.Module, inputs: np.ndarray, device: torch.device, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and penultimate-layer features (``network.embed``) in one pass, as float32."""
    logits, features = [], []
    with torch.inference_mode(), autocast_for(device):
        for start in range(0, inputs.shape[0], batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(inputs[start : start + batch_size]))
            batch = batch.to(device, non_blocking=True)
            if device.type == "cuda":
                batch = batch.contiguous(memory_format=torch.channels_last)
            embedded = network.embed(batch)  # type: ignore[operator]
            logits.append(network.classifier(embedded).float().cpu())  # type: ignore[operator]
            features.append(embedded.float().cpu())
    if not logits:
        return np.zeros((0, 0), dtype=np.float32), np.zeros((0, 0), dtype=np.float32)
    return torch.cat(logits).numpy(), torch.cat(features).numpy()


def sigmoid(values: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-values.astype(np.float64)))).astype(np.float32)
