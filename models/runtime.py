"""Where and how networks run: device choice, CPU threads, batched inference (pure: no I/O).

``auto`` picks CUDA when torch sees a GPU, else the CPU; ``cuda`` asked for on a machine with
no GPU runs on the CPU (with a warning) rather than leaving every study unanalysed. On CUDA,
inference runs under autocast (float16 matmuls and convolutions, float32 accumulation); on the
CPU, torch uses as many intra-op threads as this process may run on
(``os.sched_getaffinity``), which on a container limited to 2 cores is 2, not the host's count.

Out of memory is not a failure of the study: :func:`run_with_fallback` tries the same work
with half the batch, down to one image, then on the CPU the same way, and only then raises
:class:`~integrations.errors.AIUnavailableError` ("AI unavailable", never "no finding").
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from integrations.errors import AIUnavailableError

log = logging.getLogger(__name__)

CPU = torch.device("cpu")
T = TypeVar("T")

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
        log.warning("[models] device %r: torch sees no GPU; running on the CPU", device)
        return CPU
    return resolved


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the host's MemoryError, or a backend's "out of memory"."""
    if isinstance(error, torch.OutOfMemoryError | MemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def fallback_plan(device: torch.device, batch_size: int) -> list[tuple[torch.device, int]]:
    """(device, batch size) to try in turn: halving the batch to 1, then the CPU likewise."""
    sizes = [max(1, batch_size)]
    while sizes[-1] > 1:
        sizes.append(max(1, sizes[-1] // 2))
    devices = [device] if device.type == "cpu" else [device, CPU]
    return [(target, size) for target in devices for size in sizes]


def run_with_fallback(
    run: Callable[[torch.device, int], T], device: torch.device, batch_size: int, *, what: str
) -> T:
    """``run(device, batch_size)``, retried along :func:`fallback_plan` on out of memory only."""
    plan = fallback_plan(device, batch_size)
    tried: list[str] = []
    for index, (target, size) in enumerate(plan):
        try:
            return run(target, size)
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            tried.append(f"{target.type} batch {size}")
            if target.type == "cuda":
                torch.cuda.empty_cache()
            if index + 1 < len(plan):
                following, following_size = plan[index + 1]
                log.warning(
                    "%s: out of memory on %s at batch %d; trying %s at batch %d",
                    what,
                    target.type,
                    size,
                    following.type,
                    following_size,
                )
    raise AIUnavailableError(f"{what}: out of memory on every device ({', '.join(tried)})")


@contextmanager
def autocast_for(device: torch.device) -> Iterator[None]:
    context = (
        torch.autocast(device_type="cuda", dtype=torch.float16)
        if device.type == "cuda"
        else nullcontext()
    )
    with context:
        yield


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A batch of inputs as a tensor on ``device``: where a GPU first runs out of memory."""
    return torch.from_numpy(np.ascontiguousarray(array)).to(device, non_blocking=True)


def predict_logits_and_features(
    network: nn.Module, inputs: np.ndarray, device: torch.device, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and penultimate-layer features (``network.embed``) in one pass, as float32."""
    logits, features = [], []
    with torch.inference_mode(), autocast_for(device):
        for start in range(0, inputs.shape[0], batch_size):
            batch = to_device(inputs[start : start + batch_size], device)
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
