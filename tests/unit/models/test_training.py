"""Training pieces: lesion masks on the feature grid, the attention term, thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.demo.common import mask_grid
from models.networks import build_network
from models.package import ArchitectureSpec
from models.preprocess import crop_box
from models.training import _logits_and_attention, choose_thresholds


def test_mask_grid_follows_the_crop_and_marks_cells() -> None:
    mask = np.zeros((200, 100), dtype=bool)
    mask[90:100, 0:10] = True  # left edge, middle rows
    grid = mask_grid(mask, crop_box(200, 100, "center_square"), 10)
    # the square crop keeps rows 50..149: the lesion is cell (4, 0), dilated by one cell
    assert grid[4, 0] == 1 and grid.sum() == 4  # itself and its three in-bounds neighbours
    assert mask_grid(None, crop_box(200, 100, "none"), 10).sum() == 0


def test_attention_term_is_low_inside_and_high_outside_the_mask() -> None:
    torch.manual_seed(0)
    network = build_network(
        ArchitectureSpec(
            growth_rate=4, block_config=[2, 2], num_init_features=8, in_channels=1, num_outputs=1
        )
    )
    inputs = torch.zeros(1, 1, 64, 64)
    inputs[..., :16, :16] = 5.0  # evidence in the top left only
    with torch.no_grad():
        network.classifier.weight.fill_(1.0)
    activations = torch.relu(network.features(inputs))
    grid = activations.shape[-1]
    cam = activations.sum(1)[0]
    inside = torch.zeros(1, 1, grid, grid)
    inside[0, 0] = (cam > cam.mean()).float()
    outside = 1.0 - inside
    target = torch.ones(1, 1)
    with torch.no_grad():
        _, low = _logits_and_attention(network, inputs, target, inside)
        _, high = _logits_and_attention(network, inputs, target, outside)
        _, none = _logits_and_attention(network, inputs, torch.zeros(1, 1), inside)
    assert float(low) < 0.5 < float(high)
    assert float(none) == 0.0  # negatives are never guided


def test_thresholds_fall_back_when_a_label_has_one_class() -> None:
    probabilities = np.array([[0.2, 0.9], [0.8, 0.1], [0.7, 0.3]])
    targets = np.array([[0, 1], [1, 1], [1, 1]], dtype=np.float32)
    thresholds = choose_thresholds(probabilities, targets, ["A", "B"])
    assert thresholds["B"] == 0.5
    assert thresholds["A"] == pytest.approx(0.7)
