"""The analyzer benchmark runs end to end (tiny packages, one study each) and writes JSON."""

from __future__ import annotations

import json
from pathlib import Path

from bench.models.bench_analyzers import main
from tests.fix_models import TinyFactory


def test_bench_prints_and_writes_results(
    tiny_package_factory: TinyFactory, tmp_path: Path, capsys
) -> None:
    models = tmp_path / "models"
    for name in ("chest-xray", "msk-fracture", "head-ct-ich"):
        tiny_package_factory(name, directory=models)
    output = tmp_path / "bench.json"
    assert (
        main(
            [
                "--device",
                "cpu",
                "--studies",
                "1",
                "--warmup",
                "0",
                "--analyzers",
                "chest-xray,msk-fracture,head-ct-ich",
                "--models-dir",
                str(models),
                "--json",
                str(output),
            ]
        )
        == 0
    )
    results = json.loads(output.read_text())["results"]
    assert [row["analyzer"] for row in results] == ["chest-xray", "msk-fracture", "head-ct-ich"]
    head_ct = results[2]
    assert (
        head_ct["images_per_study"] == 40 and head_ct["p50_s"] > 0 and head_ct["target_s"] == 10.0
    )
    assert "p95 s" in capsys.readouterr().out


def test_localisation_bench_default_variant_is_the_production_gradcam() -> None:
    """The variants are compared with the map the analyzers ship: Variant() must be it."""
    import torch

    from bench.models.gradcam_localisation import Variant, VariantCAM
    from models.demo.common import small_densenet
    from models.gradcam import GradCAM
    from models.networks import build_network
    from models.package import ArchitectureSpec

    torch.manual_seed(0)
    network = build_network(ArchitectureSpec.model_validate(small_densenet(1, 3))).eval()
    inputs = torch.randn(2, 1, 64, 64)
    logits, production = GradCAM(network, "features.norm5")(inputs, [0, 2])
    variant_logits, variant = VariantCAM(network, Variant())(inputs, [0, 2])
    torch.testing.assert_close(variant_logits, logits)
    for index in (0, 2):
        torch.testing.assert_close(variant[index], production[index], atol=1e-6, rtol=1e-5)
    _, guided = VariantCAM(network, Variant(pixel="guided", sigma=2.0))(inputs, [1])
    assert guided[1].shape == (2, 64, 64) and float(guided[1].max()) <= 1.0
    assert all("forward" not in vars(m) for m in network.modules())  # guided ReLUs restored
