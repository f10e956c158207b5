"""Convert torchxrayvision DenseNet weights into a pacsflow chest-xray package (I/O).

torchxrayvision's chest models (``xrv.models.DenseNet(weights="densenet121-res224-all")`` and
its siblings) are DenseNet-121s with one input channel, 18 outputs in a fixed pathology order
(blank names for outputs a model was not trained on), images scaled to [-1024, 1024], a
centre crop and 224 x 224 input, and per-output operating thresholds (``op_threshs``). Their
module names are torchvision's, so the state dict loads into
:class:`models.networks.DenseNetClassifier` unchanged. Their released ``.pt`` files are whole
pickled models, which pacsflow never unpickles; convert in a trusted environment that has
torchxrayvision installed::

    import torch, torchxrayvision as xrv
    model = xrv.models.DenseNet(weights="densenet121-res224-all")
    torch.save(model.state_dict(), "xrv-all-state.pt")            # tensors only

    python -m models.convert_xrv xrv-all-state.pt var/models --version 1.0.0-xrv-all

The converter reads the tensors with ``weights_only=True``, infers the DenseNet configuration
from their shapes, takes each label's threshold from ``op_threshs`` (0.5 where torchxrayvision
has none, recorded as uncalibrated), and writes a package with the SHA-256 of the weights.
torchxrayvision has no tension pneumothorax output: a converted package reports the 18
labels; the manifest says so, and only packages trained with that label report it.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from integrations.errors import PackageError
from models.codes import CHEST_LABEL_CODES
from models.demo.chest_xray import TIERS
from models.demo.common import code_entry
from models.labels import CHEST_CORE_LABELS
from models.loading import write_package

# torchxrayvision's output order is pacsflow's core chest order; one name is spelt differently.
XRV_SPELLING = {"Pleural Thickening": "Pleural_Thickening"}
XRV_PATHOLOGIES = tuple(XRV_SPELLING.get(label, label) for label in CHEST_CORE_LABELS)
XRV_INPUT = {
    "size": [224, 224],
    "channels": ["image"],
    "windowing": "dicom",
    "value_range": [-1024.0, 1024.0],
    "crop": "center_square",
    "batch_size": 8,
}
_LAYER = re.compile(r"^features\.denseblock(\d+)\.denselayer(\d+)\.")


def pacsflow_label(xrv_name: str) -> str:
    return xrv_name.replace("_", " ")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise PackageError(
            f"{path}: not a tensors-only file ({error}). torchxrayvision's release files are "
            "pickled models; export model.state_dict() with torch.save in a trusted "
            "environment first (see models/convert_xrv.py)"
        ) from None
    if isinstance(loaded, Mapping) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise PackageError(f"{path}: expected a state dict, found {type(loaded).__name__}")
    return {str(key).removeprefix("module."): value for key, value in loaded.items()}


def infer_architecture(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """DenseNet configuration from tensor shapes (DenseNet-121 gives 32, [6, 12, 24, 16], 64)."""
    try:
        conv0 = state["features.conv0.weight"]
        classifier = state["classifier.weight"]
        growth = int(state["features.denseblock1.denselayer1.conv2.weight"].shape[0])
        bottleneck = int(state["features.denseblock1.denselayer1.conv1.weight"].shape[0])
    except KeyError as error:
        raise PackageError(f"not a DenseNet state dict: {error} missing") from None
    layers: dict[int, int] = {}
    for key in state:
        match = _LAYER.match(key)
        if match:
            block, layer = int(match.group(1)), int(match.group(2))
            layers[block] = max(layers.get(block, 0), layer)
    return {
        "family": "densenet",
        "growth_rate": growth,
        "block_config": [layers[block] for block in sorted(layers)],
        "num_init_features": int(conv0.shape[0]),
        "bn_size": bottleneck // growth,
        "in_channels": int(conv0.shape[1]),
        "num_outputs": int(classifier.shape[0]),
        "gradcam_layer": "features.norm5",
    }


def convert_torchxrayvision(
    state: Mapping[str, torch.Tensor],
    output_dir: Path,
    *,
    name: str = "chest-xray",
    version: str,
    pathologies: Sequence[str] = XRV_PATHOLOGIES,
    op_threshs: Sequence[float] | None = None,
    intended_use: str = "Chest radiograph triage with torchxrayvision weights (validate locally)",
    clinical_use: bool = False,
    source: str = "torchxrayvision",
) -> Path:
    """Write ``output_dir/name`` from a torchxrayvision DenseNet state dict; return its path."""
    tensors = dict(state)
    buffer = tensors.pop("op_threshs", None)
    if op_threshs is None and buffer is not None:
        op_threshs = [float(value) for value in buffer.flatten()]
    architecture = infer_architecture(tensors)
    if len(pathologies) != architecture["num_outputs"]:
        raise PackageError(
            f"{len(pathologies)} pathology names for a network with "
            f"{architecture['num_outputs']} outputs"
        )
    labels = []
    uncalibrated = []
    for index, xrv_name in enumerate(pathologies):
        if not xrv_name:
            continue  # an output this torchxrayvision model was not trained on
        label = pacsflow_label(xrv_name)
        if label not in CHEST_LABEL_CODES:
            raise PackageError(f"no code known for torchxrayvision label {xrv_name!r}")
        threshold = op_threshs[index] if op_threshs is not None else math.nan
        if not (0.0 < threshold < 1.0):
            uncalibrated.append(label)
            threshold = 0.5
        labels.append(
            {
                "name": label,
                "output_index": index,
                "code": code_entry(CHEST_LABEL_CODES[label]),
                "threshold": float(threshold),
                "tier": TIERS.get(label, "Routine"),
            }
        )
    manifest = {
        "name": name,
        "version": version,
        "manufacturer": "torchxrayvision (converted by pacsflow)",
        "analyzer": "chest-xray",
        "description": (
            f"torchxrayvision DenseNet ({architecture['block_config']}), "
            f"{len(labels)} labels; no tension pneumothorax output"
        ),
        "intended_use": intended_use,
        "clinical_use": clinical_use,
        "modalities": ["CR", "DX"],
        "body_parts": ["CHEST"],
        "views": ["PA", "AP"],
        "architecture": architecture,
        "input": XRV_INPUT,
        "labels": labels,
        "training": {
            "source": source,
            "uncalibrated_labels": uncalibrated,
            "missing_core_labels": [
                label
                for label in CHEST_CORE_LABELS
                if label not in {entry["name"] for entry in labels}
            ],
        },
    }
    target = output_dir / name
    write_package(target, manifest, tensors)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("state_dict", type=Path, help="torch.save(model.state_dict()) output")
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("--name", default="chest-xray")
    parser.add_argument("--version", required=True)
    parser.add_argument(
        "--pathologies", help="comma-separated output names (default: torchxrayvision's 18)"
    )
    parser.add_argument("--clinical-use", action="store_true", help="only after local validation")
    args = parser.parse_args(argv)
    pathologies = args.pathologies.split(",") if args.pathologies else XRV_PATHOLOGIES
    try:
        path = convert_torchxrayvision(
            read_state_dict(args.state_dict),
            args.models_dir,
            name=args.name,
            version=args.version,
            pathologies=pathologies,
            clinical_use=args.clinical_use,
        )
    except PackageError as error:
        print(f"convert_xrv: {error}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
