"""Grad-CAM localisation of the demo analyzers, and Grad-CAM-family variants, scored (I/O).

Usage::

    python -m bench.models.gradcam_localisation [--seed-offset 0] [--variants all|production]

Generates the studies of ``tests/integration/models/test_demo_models.py`` (40 chest studies
with one focal finding, 36 fracture, 14 brain MRI, 15 head CT; ``--seed-offset 50000`` gives
a fresh set of the same make-up), runs the four analyzers with the committed demo packages
and, for every true-positive heatmap on an image that shows the lesion, measures the distance
from the heatmap's peak pixel to the lesion mask. Reported per variant: the strict share
(peak inside the mask) and the pointing-game share (within one final feature-map cell, 1/16
of the field), overall and per analyzer.

The findings do not depend on the map, so every variant is scored on the same heatmaps.
Variants replace the analyzers' :class:`models.gradcam.GradCAM` only; none looks at a mask:

- weighting at a layer: Grad-CAM (channel weights = mean gradient), HiResCAM (gradient x
  activation, element-wise), Layer-CAM (positive gradient x activation), Grad-CAM++;
- the layer: ``features.norm5`` (16 x 16 at 128 px) or the 32 x 32 ``features.denseblock1``
  / ``features.transition1``, alone or fused with ``norm5`` (Layer-CAM's element-wise max, or
  mean / product of the normalised maps);
- upsampling from the feature grid: bilinear (production), bicubic, nearest;
- a pixel-space factor (Guided Grad-CAM, Selvaraju et al. 2017: Grad-CAM x guided
  backpropagation; or x the plain input gradient), optionally Gaussian-smoothed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as functional
from scipy import ndimage
from torch import nn

import models  # noqa: F401 - sets OMP_WAIT_POLICY before torch runs
from models.demo.common import FEATURE_CELLS
from models.labels import CHEST_FOCAL_LABELS as CHEST_FOCAL


def studies(offset: int) -> Iterator[tuple[str, Any, tuple[str, ...]]]:
    """(analyzer, phantom study, labels to localise), as the integration test draws them."""
    from models.labels import ANY_HEMORRHAGE, BRAIN_TUMOR, FRACTURE, HEMORRHAGE_SUBTYPES
    from models.phantoms.brain import brain_mri_study
    from models.phantoms.chest import chest_xray_study
    from models.phantoms.head_ct import head_ct_study
    from models.phantoms.msk import msk_study

    rng = np.random.default_rng(9_200_000 + offset)
    for index in range(40):
        findings = {str(rng.choice(CHEST_FOCAL))}
        study = chest_xray_study(9_200_000 + offset + index, findings, size=384)
        yield "chest-xray", study, CHEST_FOCAL
    for index in range(36):
        study = msk_study(9_400_000 + offset + index, index % 2 == 0, size=320)
        yield "msk-fracture", study, (FRACTURE,)
    rng = np.random.default_rng(9_500_000 + offset)
    for index in range(14):
        tumour = index % 2 == 0
        study = brain_mri_study(
            9_500_000 + offset + index,
            tumour,
            slices=48,
            first_z=float(rng.uniform(-40, 0)),
            around_tumour=tumour,
            shuffle=index % 3 == 0,
            multiframe=index % 4 == 1,
        )
        yield "brain-mri-tumor", study, (BRAIN_TUMOR,)
    for index in range(15):
        kinds = () if index % 3 == 0 else (HEMORRHAGE_SUBTYPES[index % 5],)
        study = head_ct_study(9_600_000 + offset + index, kinds, slices=40, shuffle=index % 2 == 0)
        yield "head-ct-ich", study, (ANY_HEMORRHAGE, *HEMORRHAGE_SUBTYPES)


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward passes only positive gradients (guided backpropagation)."""

    @staticmethod
    def forward(context: Any, values: torch.Tensor) -> torch.Tensor:
        context.save_for_backward(values)
        return values.clamp_min(0)

    @staticmethod
    def backward(context: Any, gradient: torch.Tensor) -> torch.Tensor:
        (values,) = context.saved_tensors
        return gradient.clamp_min(0) * (values > 0)


def _normalise(maps: torch.Tensor) -> torch.Tensor:
    return maps / maps.flatten(1).amax(dim=1).clamp_min(1e-12).view(-1, *[1] * (maps.dim() - 1))


def _gaussian(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(taps**2) / (2 * sigma**2))
    kernel = (kernel / kernel.sum()).to(maps.device)
    maps = functional.conv2d(
        functional.pad(maps, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1)
    )
    return functional.conv2d(
        functional.pad(maps, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1)
    )


@dataclass(frozen=True)
class Variant:
    layers: tuple[str, ...] = ("features.norm5",)
    weighting: str = "gradcam"  # gradcam | hirescam | layercam | gradcampp
    fusion: str = "max"  # max | mean | product (more than one layer)
    upsampling: str = "bilinear"  # bilinear | bicubic | nearest
    pixel: str = "none"  # none | guided | gradient
    sigma: float = 0.0  # Gaussian smoothing of the pixel factor, in network-input pixels
    power: float = 1.0  # exponent of the pixel factor


def _layer_cam(activations: torch.Tensor, gradients: torch.Tensor, weighting: str) -> torch.Tensor:
    activations, gradients = activations.float(), gradients.float()
    if weighting == "gradcam":
        weighted = gradients.mean(dim=(2, 3), keepdim=True) * activations
    elif weighting == "hirescam":
        weighted = gradients * activations
    elif weighting == "layercam":
        weighted = functional.relu(gradients) * activations
    elif weighting == "gradcampp":
        squared, cubed = gradients**2, gradients**3
        denominator = 2 * squared + (activations * cubed).sum(dim=(2, 3), keepdim=True)
        alpha = squared / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        weights = (alpha * functional.relu(gradients)).sum(dim=(2, 3), keepdim=True)
        weighted = weights * activations
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    return functional.relu(weighted.sum(dim=1, keepdim=True))


class VariantCAM:
    """Drop-in for :class:`models.gradcam.GradCAM` computing ``variant``."""

    def __init__(self, network: nn.Module, variant: Variant) -> None:
        modules = dict(network.named_modules())
        self.network = network
        self.variant = variant
        self.modules = [modules[name] for name in variant.layers]

    def __call__(
        self, inputs: torch.Tensor, output_indices: Sequence[int]
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        variant = self.variant
        kept: dict[int, torch.Tensor] = {}
        handles = [
            module.register_forward_hook(
                lambda _m, _i, output, position=position: kept.__setitem__(position, output)
            )
            for position, module in enumerate(self.modules)
        ]
        guided = [m for m in self.network.modules() if isinstance(m, nn.ReLU)]
        if variant.pixel == "guided":
            for module in guided:
                module.forward = _GuidedReLU.apply  # type: ignore[method-assign]
        try:
            with torch.enable_grad():
                inputs = inputs.detach().requires_grad_(True)
                logits = self.network(inputs)
                activations = [kept[position] for position in range(len(self.modules))]
                maps: dict[int, torch.Tensor] = {}
                indices = list(dict.fromkeys(output_indices))
                for position, index in enumerate(indices):
                    *gradients, input_gradient = torch.autograd.grad(
                        logits[:, index].sum(),
                        [*activations, inputs],
                        retain_graph=position < len(indices) - 1,
                    )
                    per_layer = []
                    for layer_activations, layer_gradients in zip(
                        activations, gradients, strict=True
                    ):
                        cam = _layer_cam(layer_activations, layer_gradients, variant.weighting)
                        options = (
                            {} if variant.upsampling == "nearest" else {"align_corners": False}
                        )
                        cam = functional.interpolate(
                            cam, size=inputs.shape[-2:], mode=variant.upsampling, **options
                        ).clamp_min(0)
                        per_layer.append(_normalise(cam))
                    stacked = torch.stack(per_layer)
                    if variant.fusion == "max":
                        cam = stacked.amax(dim=0)
                    elif variant.fusion == "mean":
                        cam = stacked.mean(dim=0)
                    else:
                        cam = stacked.prod(dim=0)
                    if variant.pixel != "none":
                        factor = (
                            input_gradient.clamp_min(0)
                            if variant.pixel == "guided"
                            else input_gradient.abs()
                        ).sum(dim=1, keepdim=True)
                        if variant.sigma > 0:
                            factor = _gaussian(factor, variant.sigma)
                        cam = cam * _normalise(factor) ** variant.power
                    maps[index] = _normalise(cam)[:, 0].clamp(0.0, 1.0).detach()
        finally:
            for handle in handles:
                handle.remove()
            if variant.pixel == "guided":
                for module in guided:
                    del module.forward
        return logits.detach(), maps


N5, DB1, T1 = "features.norm5", "features.denseblock1", "features.transition1.relu"
VARIANTS: dict[str, Variant | None] = {
    "production (Grad-CAM, norm5, bilinear)": None,
    "Grad-CAM norm5 bicubic": Variant(upsampling="bicubic"),
    "Grad-CAM norm5 nearest": Variant(upsampling="nearest"),
    "HiResCAM norm5": Variant(weighting="hirescam"),
    "HiResCAM norm5 bicubic": Variant(weighting="hirescam", upsampling="bicubic"),
    "Layer-CAM norm5": Variant(weighting="layercam"),
    "Grad-CAM++ norm5": Variant(weighting="gradcampp"),
    "Grad-CAM denseblock1 (32x32)": Variant(layers=(DB1,)),
    "HiResCAM denseblock1": Variant(layers=(DB1,), weighting="hirescam"),
    "Layer-CAM denseblock1": Variant(layers=(DB1,), weighting="layercam"),
    "Layer-CAM transition1 + norm5, max": Variant(layers=(T1, N5), weighting="layercam"),
    "Layer-CAM denseblock1 + norm5, max": Variant(layers=(DB1, N5), weighting="layercam"),
    "Layer-CAM denseblock1 + norm5, mean": Variant(
        layers=(DB1, N5), weighting="layercam", fusion="mean"
    ),
    "Grad-CAM denseblock1 x norm5": Variant(layers=(DB1, N5), fusion="product"),
    "Guided Grad-CAM": Variant(pixel="guided"),
    "Guided Grad-CAM, sigma 2": Variant(pixel="guided", sigma=2.0),
    "Guided Grad-CAM, sigma 4": Variant(pixel="guided", sigma=4.0),
    "Guided Grad-CAM, sigma 6": Variant(pixel="guided", sigma=6.0),
    "Guided Grad-CAM, sigma 6, sqrt": Variant(pixel="guided", sigma=6.0, power=0.5),
    "Guided Grad-CAM, sigma 6, bicubic": Variant(pixel="guided", sigma=6.0, upsampling="bicubic"),
    "Grad-CAM x |input gradient|, sigma 4": Variant(pixel="gradient", sigma=4.0),
}


Record = tuple[bool, bool, float]  # strict, within a cell, distance in pixels


def score(
    registry: Any,
    cohort: list[tuple[str, Any, tuple[str, ...]]],
    factory: Callable[[nn.Module], Any] | None,
) -> dict[str, list[Record]]:
    records: dict[str, list[Record]] = defaultdict(list)
    for kind, study, labels in cohort:
        analyzer = registry.get(kind)
        production = analyzer._gradcam
        if factory is not None:
            analyzer._gradcam = factory(analyzer.package.network)
        try:
            result = analyzer.analyze(study.datasets)
        finally:
            analyzer._gradcam = production
        for heatmap in result.heatmaps:
            if heatmap.label not in labels or heatmap.label not in study.labels:
                continue
            mask = study.mask(
                heatmap.label, heatmap.image.sop_instance_uid, heatmap.image.frame_number
            )
            if mask is None or not mask.any():
                continue
            peak = np.unravel_index(int(np.argmax(heatmap.values)), heatmap.values.shape)
            distance = float(ndimage.distance_transform_edt(~mask)[peak])
            cell = min(mask.shape) / FEATURE_CELLS
            records[kind].append((distance == 0.0, distance <= cell, distance))
    return records


def summary(records: dict[str, list[Record]]) -> str:
    every = [record for per_kind in records.values() for record in per_kind]
    strict = sum(record[0] for record in every)
    within = sum(record[1] for record in every)
    kinds = ", ".join(
        f"{kind.split('-')[0]} {sum(r[0] for r in values)}/{len(values)}"
        for kind, values in records.items()
    )
    return (
        f"strict {strict}/{len(every)} = {strict / max(1, len(every)):.3f}, "
        f"within a cell {within / max(1, len(every)):.3f} ({kinds})"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-offset", type=int, default=0, help="0: the test's studies")
    parser.add_argument("--variants", choices=("all", "production"), default="all")
    parser.add_argument(
        "--models-dir", type=Path, help="score these packages (default: the committed demo ones)"
    )
    args = parser.parse_args(argv)

    from models.demo import ensure_demo_packages
    from models.package_registry import PackageRegistry

    directory = args.models_dir or Path(tempfile.mkdtemp(prefix="gradcam-localisation-"))
    if args.models_dir is None:
        ensure_demo_packages(directory, train_if_needed=False)
    registry = PackageRegistry(directory, "cpu", allow_non_clinical=True)
    cohort = list(studies(args.seed_offset))
    chosen = VARIANTS if args.variants == "all" else dict(list(VARIANTS.items())[:1])
    for name, variant in chosen.items():
        started = time.perf_counter()
        factory = None if variant is None else (lambda net, v=variant: VariantCAM(net, v))
        records = score(registry, cohort, factory)
        print(f"{name:40s} {summary(records)}  [{time.perf_counter() - started:.0f} s]", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
