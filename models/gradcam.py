"""Grad-CAM on torch hooks (pure: torch, no I/O).

Selvaraju et al. (ICCV 2017): for an output ``y_k`` and the activations ``A`` (C x h x w) of a
convolutional layer, weight each channel by the spatial mean of ``dy_k/dA`` and keep the
positive part of the weighted sum. A forward hook on the named layer keeps ``A`` and hooks its
gradient; one forward pass serves every requested output (``retain_graph``), so a study with
three positive labels costs one forward and three backward passes through the head.
Maps are normalised to [0, 1] per image (all zeros when the evidence is nowhere positive).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as functional
from torch import nn


class GradCAM:
    """Grad-CAM for ``network`` at the module named ``layer`` (e.g. ``"features.norm5"``)."""

    def __init__(self, network: nn.Module, layer: str) -> None:
        modules = dict(network.named_modules())
        if layer not in modules:
            raise ValueError(f"Grad-CAM layer {layer!r} is not a module of the network")
        self.network = network
        self.layer = layer
        self._module = modules[layer]
        self._activations: torch.Tensor | None = None

    def _keep(self, _module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        self._activations = output

    def __call__(
        self, inputs: torch.Tensor, output_indices: Sequence[int]
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Logits (N x outputs) and, per output index, maps (N x H x W) at the input's size."""
        handle = self._module.register_forward_hook(self._keep)
        try:
            with torch.enable_grad():
                # Parameters are frozen; a grad-requiring input makes autograd record the graph.
                inputs = inputs.detach().requires_grad_(True)
                logits = self.network(inputs)
                activations = self._activations
                if activations is None:
                    raise RuntimeError(f"layer {self.layer!r} was not run by the forward pass")
                maps: dict[int, torch.Tensor] = {}
                indices = list(dict.fromkeys(output_indices))
                for position, index in enumerate(indices):
                    (gradients,) = torch.autograd.grad(
                        logits[:, index].sum(),
                        activations,
                        retain_graph=position < len(indices) - 1,
                    )
                    weights = gradients.float().mean(dim=(2, 3), keepdim=True)
                    cam = functional.relu((weights * activations.float()).sum(dim=1, keepdim=True))
                    cam = functional.interpolate(
                        cam, size=inputs.shape[-2:], mode="bilinear", align_corners=False
                    )[:, 0]
                    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
                    maps[index] = (cam / peak).clamp(0.0, 1.0).detach()
        finally:
            handle.remove()
            self._activations = None
        return logits.detach(), maps
