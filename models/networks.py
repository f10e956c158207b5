"""Networks built from a manifest's architecture (pure: torch, no I/O).

:class:`DenseNetClassifier` keeps torchvision's module names (``features.conv0`` ...
``features.norm5``, ``classifier``), which are also torchxrayvision's, so a state dict from
either loads unchanged; DenseNet-121 is ``growth_rate=32, block_config=(6, 12, 24, 16),
num_init_features=64``. Unlike torchvision's forward it applies the final ReLU out of place, so
Grad-CAM hooks on ``features`` (or ``features.norm5``) see the activations autograd uses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as functional
import torchvision
from torch import nn

from models.package import ArchitectureSpec

DENSENET121 = {"growth_rate": 32, "block_config": [6, 12, 24, 16], "num_init_features": 64}


class DenseNetClassifier(nn.Module):
    """DenseNet-BC feature extractor, global average pooling and one linear layer (logits)."""

    def __init__(self, architecture: ArchitectureSpec) -> None:
        super().__init__()
        reference = torchvision.models.DenseNet(
            growth_rate=architecture.growth_rate,
            block_config=tuple(architecture.block_config),
            num_init_features=architecture.num_init_features,
            bn_size=architecture.bn_size,
            num_classes=architecture.num_outputs,
        )
        features = reference.features
        if architecture.in_channels != 3:
            features.conv0 = nn.Conv2d(
                architecture.in_channels,
                architecture.num_init_features,
                kernel_size=7,
                stride=2,
                padding=3,
                bias=False,
            )
            nn.init.kaiming_normal_(features.conv0.weight)
        self.features = features
        self.classifier = reference.classifier
        self.architecture = architecture

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        activations = functional.relu(self.features(inputs))
        pooled = functional.adaptive_avg_pool2d(activations, 1).flatten(1)
        return self.classifier(pooled)


def build_network(architecture: ArchitectureSpec) -> DenseNetClassifier:
    """A freshly initialised network of the given architecture (weights are loaded after)."""
    if architecture.family != "densenet":  # the only family the manifest schema allows today
        raise ValueError(f"unsupported architecture family {architecture.family!r}")
    return DenseNetClassifier(architecture)


def count_parameters(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())
