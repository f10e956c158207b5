"""Threads x batch size for the real-size head CT network (2.5D ResNet-50, 9 x 256 x 256),
forward only (I/O: prints).

    .venv/bin/python -m bench.models.thread_batch_sweep
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

import models  # noqa: F401 - sets OMP_WAIT_POLICY before torch is first imported
from models.networks import build_network
from models.package import ArchitectureSpec
from models.runtime import predict_logits_and_features


def main() -> None:
    net = build_network(
        ArchitectureSpec(family="resnet", depth=50, in_channels=9, num_outputs=6)
    ).eval()
    slices = np.random.rand(16, 9, 256, 256).astype(np.float32)
    device = torch.device("cpu")
    print("load", os.getloadavg())
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for batch in (1, 16):
            predict_logits_and_features(net, slices[:2], device, batch)  # warm-up
            started = time.perf_counter()
            predict_logits_and_features(net, slices, device, batch)
            elapsed = time.perf_counter() - started
            print(f"threads {threads} batch {batch}: {elapsed:.2f} s for 16 slices", flush=True)
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
