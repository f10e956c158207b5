"""Training loop, operating points and held-out metrics for small demo networks (pure).

Deterministic for a given seed and thread count: seeded torch and numpy generators, a fixed
sample order per epoch, no data-loader workers. Thresholds are chosen on a validation split
(Youden's J), metrics are measured on a separate held-out split, so the numbers a manifest
reports were never seen during fitting or threshold selection.

The phantoms come with lesion masks, and the demo networks use them: besides the
classification loss, an attention term (Li et al., "Tell Me Where to Look", CVPR 2018)
penalises the share of each positive label's class activation map that falls outside its
(dilated) lesion mask. A small network trained on a few thousand images otherwise learns
shortcuts next to the lesion; with the term, its Grad-CAM maps point at what it detects.
Real weights never see this loss: their heatmaps are whatever their training made them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as functional
from torch import nn

from models.evaluation import roc_auc, youden_threshold

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    positive_weight_cap: float = 8.0
    attention_weight: float = 0.2


@dataclass(frozen=True)
class TrainingReport:
    seconds: float
    final_loss: float
    losses: tuple[float, ...]


def train_network(
    network: nn.Module,
    inputs: np.ndarray,
    targets: np.ndarray,
    config: TrainingConfig,
    *,
    masks: np.ndarray | None = None,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TrainingReport:
    """Fit ``network`` (logits) to multi-label ``targets`` with class-balanced BCE and AdamW.

    ``inputs`` (N x C x H x W) may be float16 to halve memory; batches are cast to float32.
    ``masks`` (N x labels x h x w, 0/1 at the final feature map's resolution) switch on the
    attention term for the positive labels that have a mask.
    """
    torch.manual_seed(config.seed)
    torch.set_flush_denormal(True)  # tiny gradients late in training otherwise slow CPUs down
    generator = torch.Generator().manual_seed(config.seed)
    network.train()
    network.to(memory_format=torch.channels_last)  # about 30 % faster convolutions on CPU
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    count = inputs.shape[0]
    steps_per_epoch = math.ceil(count / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.2,
    )
    target_tensor = torch.from_numpy(targets.astype(np.float32))
    positives = target_tensor.mean(dim=0).clamp(1e-3, 1 - 1e-3)
    pos_weight = ((1 - positives) / positives).clamp(max=config.positive_weight_cap)
    input_tensor = torch.from_numpy(inputs)
    mask_tensor = torch.from_numpy(masks) if masks is not None else None
    losses = []
    started = time.perf_counter()
    for epoch in range(config.epochs):
        order = torch.randperm(count, generator=generator)
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = input_tensor[index].float().contiguous(memory_format=torch.channels_last)
            if augment is not None:
                batch = augment(batch, generator)
            if mask_tensor is None:
                logits = network(batch)
                attention = torch.zeros(())
            else:
                logits, attention = _logits_and_attention(
                    network, batch, target_tensor[index], mask_tensor[index].float()
                )
            loss = (
                functional.binary_cross_entropy_with_logits(
                    logits, target_tensor[index], pos_weight=pos_weight
                )
                + config.attention_weight * attention
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(index)
        losses.append(total / count)
        log.info("epoch %d/%d: loss %.4f", epoch + 1, config.epochs, losses[-1])
        if progress is not None:
            progress(epoch, losses[-1])
    network.to(memory_format=torch.contiguous_format)
    network.eval()
    return TrainingReport(time.perf_counter() - started, losses[-1], tuple(losses))


def _logits_and_attention(
    network: nn.Module, batch: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits, and the mean share of positive labels' CAM mass outside their lesion masks."""
    activations = functional.relu(network.features(batch))  # type: ignore[operator]
    pooled = functional.adaptive_avg_pool2d(activations, 1).flatten(1)
    logits = network.classifier(pooled)  # type: ignore[operator]
    if masks.shape[-2:] != activations.shape[-2:]:
        raise ValueError(
            f"masks are {tuple(masks.shape[-2:])}, feature maps {tuple(activations.shape[-2:])}"
        )
    weights = network.classifier.weight  # type: ignore[union-attr]
    cam = functional.relu(torch.einsum("nchw,kc->nkhw", activations, weights))
    share = cam / cam.sum(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    outside = (share * (1.0 - masks)).sum(dim=(2, 3))
    guided = (targets > 0.5) & (masks.flatten(2).amax(dim=2) > 0)
    if not bool(guided.any()):
        return logits, torch.zeros((), device=logits.device)
    return logits, outside[guided].mean()


def predict_probabilities(
    network: nn.Module, inputs: np.ndarray, batch_size: int = 64
) -> np.ndarray:
    network.eval()
    outputs = []
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch_size):
            batch = torch.from_numpy(inputs[start : start + batch_size]).float()
            outputs.append(torch.sigmoid(network(batch)))
    return torch.cat(outputs).numpy()


def choose_thresholds(
    probabilities: np.ndarray, targets: np.ndarray, labels: Sequence[str], default: float = 0.5
) -> dict[str, float]:
    """Youden-optimal threshold per label on a validation split (default when one class)."""
    thresholds = {}
    for column, label in enumerate(labels):
        truth = targets[:, column] > 0.5
        if truth.all() or not truth.any():
            thresholds[label] = default
        else:
            thresholds[label] = float(
                np.clip(youden_threshold(truth, probabilities[:, column]), 0.02, 0.98)
            )
    return thresholds


def held_out_metrics(
    probabilities: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    thresholds: dict[str, float],
) -> dict[str, dict[str, float | int | None]]:
    """AUC, sensitivity and specificity at the chosen threshold, per label, on held-out data."""
    metrics: dict[str, dict[str, float | int | None]] = {}
    for column, label in enumerate(labels):
        truth = targets[:, column] > 0.5
        scores = probabilities[:, column]
        predicted = scores >= thresholds[label]
        positives, negatives = int(truth.sum()), int((~truth).sum())
        metrics[label] = {
            "auc": round(roc_auc(truth, scores), 4) if positives and negatives else None,
            "sensitivity": round(float((predicted & truth).sum() / positives), 4)
            if positives
            else None,
            "specificity": round(float((~predicted & ~truth).sum() / negatives), 4)
            if negatives
            else None,
            "positives": positives,
            "negatives": negatives,
        }
    return metrics
