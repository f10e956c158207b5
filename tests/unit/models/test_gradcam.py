"""Grad-CAM on hooks: matches the closed form for a GAP + linear head, and cleans up."""

from __future__ import annotations

import torch
import torch.nn.functional as functional

from models.gradcam import GradCAM
from models.networks import build_network
from models.package import ArchitectureSpec

ARCHITECTURE = ArchitectureSpec(
    growth_rate=8, block_config=[2, 2], num_init_features=8, in_channels=1, num_outputs=3
)


def test_gradcam_equals_the_closed_form_for_densenet_head() -> None:
    torch.manual_seed(0)
    network = build_network(ARCHITECTURE).eval()
    inputs = torch.randn(2, 1, 64, 64)
    _, maps = GradCAM(network, "features.norm5")(inputs, [1])
    with torch.no_grad():
        activations = network.features(inputs)  # N x C x h x w, before the final ReLU
        h, w = activations.shape[-2:]
        # y_k = W_k . mean(relu(A)) so dy_k/dA_c(i,j) = W_kc [A_c(i,j) > 0] / (h w)
        alpha = (
            network.classifier.weight[1][None, :] * (activations > 0).float().mean(dim=(2, 3)) / 1.0
        )
        cam = functional.relu(
            (alpha[:, :, None, None] * activations).sum(1, keepdim=True) / (h * w)
        )
        cam = functional.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
        cam = cam / cam.flatten(1).amax(1)[:, None, None]
    torch.testing.assert_close(maps[1], cam, atol=1e-5, rtol=1e-4)


def test_maps_are_in_unit_range_at_input_size_and_hooks_are_removed() -> None:
    torch.manual_seed(1)
    network = build_network(ARCHITECTURE).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    cam = GradCAM(network, "features.norm5")
    logits, maps = cam(torch.randn(1, 1, 48, 80), [0, 2, 0])
    assert logits.shape == (1, 3)
    assert set(maps) == {0, 2}
    for values in maps.values():
        assert values.shape == (1, 48, 80)
        assert float(values.min()) >= 0.0 and float(values.max()) <= 1.0
    norm5 = dict(network.named_modules())["features.norm5"]
    assert not norm5._forward_hooks
    assert not any(parameter.requires_grad for parameter in network.parameters())


def test_unknown_layer_is_refused() -> None:
    network = build_network(ARCHITECTURE)
    try:
        GradCAM(network, "features.norm9")
    except ValueError as error:
        assert "norm9" in str(error)
    else:  # pragma: no cover - the constructor must refuse
        raise AssertionError("GradCAM accepted a layer the network does not have")
