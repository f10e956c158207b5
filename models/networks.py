"""Networks built from a manifest's architecture (pure: torch, no I/O).

Both families expose ``embed`` (the pooled penultimate-layer features, which the input-domain
gate scores) and ``classifier`` (the linear layer that turns them into logits).

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

DENSENET121_BLOCKS = (6, 12, 24, 16)
DENSENET121 = {"growth_rate": 32, "block_config": list(DENSENET121_BLOCKS), "num_init_features": 64}


class DenseNetClassifier(nn.Module):
    """DenseNet-BC feature extractor, global average pooling and one linear layer (logits)."""

    def __init__(self, architecture: ArchitectureSpec) -> None:
        super().__init__()
        reference = torchvision.models.DenseNet(
            growth_rate=architecture.growth_rate or 32,
            block_config=tuple(architecture.block_config or DENSENET121_BLOCKS),
            num_init_features=architecture.num_init_features or 64,
            bn_size=architecture.bn_size,
            num_classes=architecture.num_outputs,
        )
        features = reference.features
        if architecture.in_channels != 3:
            features.conv0 = nn.Conv2d(
                architecture.in_channels,
                architecture.num_init_features or 64,
                kernel_size=7,
                stride=2,
                padding=3,
                bias=False,
            )
            nn.init.kaiming_normal_(features.conv0.weight)
        self.features = features
        self.classifier = reference.classifier
        self.architecture = architecture

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features: the pooled activations the classifier reads."""
        activations = functional.relu(self.features(inputs))
        return functional.adaptive_avg_pool2d(activations, 1).flatten(1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(inputs))


class ResNetClassifier(nn.Module):
    """A torchvision ResNet (module names kept: ``conv1`` ... ``layer4``, ``fc``), any number
    of input channels; ``embed`` gives the pooled ``layer4`` features the ``fc`` layer reads."""

    def __init__(self, architecture: ArchitectureSpec) -> None:
        super().__init__()
        builders = {
            18: torchvision.models.resnet18,
            34: torchvision.models.resnet34,
            50: torchvision.models.resnet50,
        }
        reference = builders[architecture.depth or 18](
            weights=None, num_classes=architecture.num_outputs
        )
        if architecture.in_channels != 3:
            reference.conv1 = nn.Conv2d(
                architecture.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False
            )
            nn.init.kaiming_normal_(reference.conv1.weight)
        self.conv1, self.bn1, self.relu, self.maxpool = (
            reference.conv1,
            reference.bn1,
            reference.relu,
            reference.maxpool,
        )
        self.layer1, self.layer2 = reference.layer1, reference.layer2
        self.layer3, self.layer4 = reference.layer3, reference.layer4
        self.classifier = reference.fc
        self.architecture = architecture

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(inputs))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return functional.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(inputs))


def build_network(architecture: ArchitectureSpec) -> nn.Module:
    """A freshly initialised network of the given architecture (weights are loaded after)."""
    if architecture.family == "resnet":
        return ResNetClassifier(architecture)
    return DenseNetClassifier(architecture)


def count_parameters(network: nn.Module) -> int:
    return sum(parameter.numel() for parameter in network.parameters())
