"""torchxrayvision DenseNet-121 weights (random here) become a package that loads and agrees."""

from __future__ import annotations

import io
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from integrations.errors import PackageError
from models.analyzers.chest_xray import ChestXrayAnalyzer
from models.analyzers.radiograph import prepare_radiograph
from models.convert_xrv import XRV_PATHOLOGIES, convert_torchxrayvision, main, read_state_dict
from models.loading import read_manifest
from models.package_registry import PackageRegistry
from models.phantoms.chest import chest_xray_study

OP_THRESHS = [
    0.07,
    0.04,
    0.1,
    0.01,
    0.02,
    0.002,
    0.01,
    0.1,
    0.06,
    0.03,
    0.05,
    0.02,
    0.02,
    0.04,
    0.05,
    0.04,
    0.2,
    0.05,
]


def xrv_like_densenet121() -> nn.Module:
    """torchxrayvision's DenseNet layout: torchvision DenseNet-121 with one input channel."""
    torch.manual_seed(3)
    model = torchvision.models.densenet121(weights=None, num_classes=18)
    model.features.conv0 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    model.register_buffer("op_threshs", torch.tensor(OP_THRESHS))
    return model.eval()


@pytest.fixture(scope="module")
def xrv_state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("xrv") / "xrv-state.pt"
    torch.save(xrv_like_densenet121().state_dict(), path)
    return path


def test_conversion_infers_densenet121_and_takes_thresholds(
    xrv_state_file: Path, tmp_path: Path
) -> None:
    assert main([str(xrv_state_file), str(tmp_path), "--version", "1.0.0-test"]) == 0
    manifest = read_manifest(tmp_path / "chest-xray")
    architecture = manifest.architecture
    assert (
        architecture.growth_rate,
        architecture.block_config,
        architecture.num_init_features,
    ) == (32, [6, 12, 24, 16], 64)
    assert architecture.in_channels == 1 and architecture.num_outputs == 18
    assert manifest.input.size == (224, 224) and manifest.input.value_range == (-1024.0, 1024.0)
    assert manifest.label("Pleural Thickening").threshold == pytest.approx(0.03)
    assert "Tension Pneumothorax" not in {label.name for label in manifest.labels}
    assert not manifest.clinical_use


def test_converted_package_gives_the_original_network_outputs(
    xrv_state_file: Path, tmp_path: Path
) -> None:
    convert_torchxrayvision(read_state_dict(xrv_state_file), tmp_path, version="1.0.0-test")
    analyzer = PackageRegistry(tmp_path, "cpu", allow_non_clinical=True).get("chest-xray")
    assert isinstance(analyzer, ChestXrayAnalyzer)
    study = chest_xray_study(2, ("Effusion",), size=320)
    result = analyzer.analyze(study.datasets)
    assert result.status == "analysed" and len(result.findings) == 18
    inputs = prepare_radiograph(study.datasets[0], analyzer.manifest.input)[0].inputs
    assert inputs.shape == (1, 224, 224) and inputs.min() >= -1024 and inputs.max() <= 1024
    with torch.no_grad():
        reference = torch.sigmoid(xrv_like_densenet121()(torch.from_numpy(inputs[None]))).numpy()[0]
    probabilities = np.array([finding.probability for finding in result.findings])
    order = [
        XRV_PATHOLOGIES.index(f.label.replace("Pleural Thickening", "Pleural_Thickening"))
        for f in result.findings
    ]
    np.testing.assert_allclose(probabilities, reference[order], atol=1e-5)
    for heatmap in result.heatmaps:
        assert heatmap.values.shape == (320, 320)


def test_blank_outputs_are_dropped_and_then_required_labels_are_missing(tmp_path: Path) -> None:
    state = xrv_like_densenet121().state_dict()
    names = [*XRV_PATHOLOGIES[:14], "", "", "", ""]  # torchxrayvision's NIH-only model
    convert_torchxrayvision(state, tmp_path, version="nih", pathologies=names)
    manifest = read_manifest(tmp_path / "chest-xray")
    assert len(manifest.labels) == 14
    assert "Lung Opacity" in manifest.training["missing_core_labels"]
    with pytest.raises(PackageError, match=r"labels missing.*Lung Lesion"):
        PackageRegistry(tmp_path, "cpu", allow_non_clinical=True).get("chest-xray")


def test_a_pickled_model_file_is_refused_with_instructions(tmp_path: Path) -> None:
    path = tmp_path / "release.pt"
    buffer = io.BytesIO()
    torch.save(OrderedDict(model=nn.Linear(2, 2)), buffer)  # pickles a Module, like the releases
    path.write_bytes(buffer.getvalue())
    with pytest.raises(PackageError, match="state_dict"):
        read_state_dict(path)
