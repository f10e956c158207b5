"""Threads x batch size for the real-size head CT network (2.5D ResNet-50, 9 x 256 x 256), forward only (I/O: prints)."""

import os
import time

import numpy as np
import torch

import models  # noqa: F401 - sets OMP_WAIT_POLICY before torch is first imported
from models.networks import build_network
from models.package import ArchitectureSpec
from models.runtime import predict_logits_and_features

net = build_network(
    ArchitectureSpec(family="resnet", depth=50, in_channels=9, num_outputs=6)
).eval()
x = np.random.rand(16, 9, 256, 256).astype(np.float32)
print("load", os.getloadavg())
for threads in (1, 2):
    torch.set_num_threads(threads)
    for batch in (1, 16):
        predict_logits_and_features(net, x[:2], torch.device("cpu"), batch)
        t = time.perf_counter()
        predict_logits_and_features(net, x, torch.device("cpu"), batch)

        print(
            f"threads {threads} batch {batch}: {time.perf_counter() - t:.2f} s for 16 slices",
            flush=True,
        )
print("load", os.getloadavg())
