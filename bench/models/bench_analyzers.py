"""Analyzer speed: p50/p95 seconds per study and images per second, per analyzer (I/O).

Usage (see bench/models/README.md)::

    python -m bench.models.bench_analyzers [--device auto|cpu|cuda] [--studies 10]
        [--analyzers chest-xray,msk-fracture,brain-mri-tumor,head-ct-ich] [--densenet121]
        [--json results.json]

Each study is generated once, written to DICOM bytes and read back fresh for every timed
call, so a timing includes what the flow's ``run_inference`` pays after ``dcmread``: pixel
decoding, Modality/VOI LUTs, resizing, batched inference and Grad-CAM on positive findings.
Studies: chest PA 512x512 with findings; extremity AP+lateral 384x384; brain MRI 200 slices of
192x192; head CT 40 slices of 256x256. ``--densenet121`` adds ``chest-xray-d121``: the
chest analyzer with a randomly initialised DenseNet-121 at 224 px (the real-weights
configuration, converted through the torchxrayvision path) to show what real weights cost.
The reference measured in the same run is the network alone (forward pass of the same
inputs), printed as the share of the study time the network takes.

``--real-size`` adds, for each analyzer, ``<name>-real``: the same analyzer, manifest and
studies with the architecture a real package would ship, randomly initialised with the right
shapes: chest DenseNet-121 at 512 px, fracture ResNet-50 at 384 px, brain MRI a 2.5D
ResNet-18 at 192 px (5 slices as channels, 200 slices a study), head CT a 2.5D ResNet-50 at
256 px (3 slices x 3 windows, 40 slices a study). One label per package is set to fire so a
Grad-CAM is part of each timing, as on a positive study. ``--threads 1,2`` and
``--batch-sizes 1,16`` repeat the real-size rows for each torch thread count and inference
batch size, to measure what pays on the CPU.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.filewriter import dcmwrite

import models  # noqa: F401 - sets OMP_WAIT_POLICY before torch is first imported

ANALYZERS = ("chest-xray", "msk-fracture", "brain-mri-tumor", "head-ct-ich")
TARGETS_CPU = {"chest-xray": 1.0, "brain-mri-tumor": 30.0, "head-ct-ich": 10.0}
TARGETS_GPU = {"chest-xray": 0.1, "brain-mri-tumor": 2.0}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


def study_factory(name: str) -> Callable[[int], Any]:
    from models.phantoms.brain import brain_mri_study
    from models.phantoms.chest import chest_xray_study
    from models.phantoms.head_ct import head_ct_study
    from models.phantoms.msk import msk_study

    findings = (("Pneumothorax", "Effusion"), ("Tension Pneumothorax",), ("Mass",), ())
    hemorrhages = (("Subdural hemorrhage",), ("Intraparenchymal hemorrhage",), ())
    factories: dict[str, Callable[[int], Any]] = {
        "chest-xray": lambda seed: chest_xray_study(seed, findings[seed % 4]),
        "chest-xray-d121": lambda seed: chest_xray_study(seed, findings[seed % 4]),
        "msk-fracture": lambda seed: msk_study(seed, seed % 2 == 0),
        "brain-mri-tumor": lambda seed: brain_mri_study(seed, seed % 2 == 0, slices=200),
        "head-ct-ich": lambda seed: head_ct_study(seed, hemorrhages[seed % 3], slices=40),
    }
    return factories[name]


def as_bytes(datasets: list[Any]) -> list[bytes]:
    encoded = []
    for dataset in datasets:
        buffer = io.BytesIO()
        dcmwrite(buffer, dataset, enforce_file_format=True)
        encoded.append(buffer.getvalue())
    return encoded


def read(encoded: list[bytes]) -> list[Any]:
    return [dcmread(io.BytesIO(item)) for item in encoded]


def network_seconds(analyzer: Any, datasets: list[Any]) -> float:
    """The network alone on this study's prepared inputs (the in-run reference)."""
    import torch

    from models.analyzers.brain_mri_tumor import BrainMriTumorAnalyzer
    from models.analyzers.head_ct_ich import HeadCtHemorrhageAnalyzer

    if isinstance(analyzer, BrainMriTumorAnalyzer | HeadCtHemorrhageAnalyzer):
        series, _ = analyzer.prepare(datasets)
        inputs = np.concatenate([item.inputs for item in series])
    else:
        selected, _ = analyzer.select(datasets)
        images = [entry[0] if isinstance(entry, tuple) else entry for entry in selected]
        inputs = np.stack([image.inputs for image in images])
    started = time.perf_counter()
    analyzer.logits(inputs)
    if analyzer.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def bench_one(registry: Any, name: str, studies: int, warmup: int) -> dict[str, Any]:
    analyzer = registry.get(name)
    make = study_factory(name.split("-real")[0])
    encoded = [as_bytes(make(7_000_000 + index).datasets) for index in range(studies)]
    for index in range(warmup):
        analyzer.analyze(read(encoded[index % len(encoded)]))
    times, images, networks, positives = [], [], [], []
    for payload in encoded:
        datasets = read(payload)
        started = time.perf_counter()
        result = analyzer.analyze(datasets)
        times.append(time.perf_counter() - started)
        images.append(len(result.analysed_images))
        positives.append(len(result.heatmaps))
        networks.append(network_seconds(analyzer, read(payload)))
    device = analyzer.device.type
    targets = TARGETS_GPU if device == "cuda" else TARGETS_CPU
    p95 = percentile(times, 0.95)
    target = targets.get(name.split("-real")[0].removesuffix("-d121"))
    return {
        "analyzer": name,
        "device": device,
        "studies": studies,
        "images_per_study": statistics.mean(images),
        "p50_s": round(statistics.median(times), 4),
        "p95_s": round(p95, 4),
        "images_per_s": round(sum(images) / sum(times), 1),
        "heatmaps_per_study": statistics.mean(positives),
        "network_share": round(sum(networks) / sum(times), 3),
        "target_s": target,
        "meets_target": None if target is None else bool(p95 <= target),
    }


def densenet121_package(models_dir: Path) -> None:
    """A chest-xray-d121 package: random DenseNet-121 weights through the converter."""
    import torch
    import torchvision
    from torch import nn

    from models.convert_xrv import convert_torchxrayvision

    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None, num_classes=18)
    model.features.conv0 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    thresholds = [0.6] * 18
    thresholds[3] = 0.05  # a "positive" pneumothorax so Grad-CAM is part of the timing
    convert_torchxrayvision(
        model.state_dict(),
        models_dir,
        name="chest-xray-d121",
        version="bench-random",
        op_threshs=thresholds,
        source="random initialisation (benchmark only)",
    )


# analyzer -> (architecture, input overrides) of what a real package would ship
REAL_SIZE: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "chest-xray": (
        {
            "family": "densenet",
            "growth_rate": 32,
            "block_config": [6, 12, 24, 16],
            "num_init_features": 64,
        },
        {"size": [512, 512]},
    ),
    "msk-fracture": ({"family": "resnet", "depth": 50}, {"size": [384, 384]}),
    "brain-mri-tumor": (
        {"family": "resnet", "depth": 18},
        {"size": [192, 192], "context_slices": 2},
    ),
    "head-ct-ich": ({"family": "resnet", "depth": 50}, {"size": [256, 256]}),
}


def real_size_package(models_dir: Path, name: str, batch_size: int | None = None) -> str:
    """``<name>-real``: the demo manifest with a real-size, randomly initialised network."""
    import torch

    from models.loading import read_manifest, write_package
    from models.networks import build_network
    from models.package import ArchitectureSpec

    demo = read_manifest(models_dir / name).model_dump(mode="json")
    architecture, overrides = REAL_SIZE[name]
    spec = {**demo["input"], **overrides}
    if batch_size is not None:
        spec["batch_size"] = batch_size
    channels = len(spec["windows"]) if spec["windowing"] == "fixed" else 1
    in_channels = channels * (2 * spec["context_slices"] + 1)
    architecture = {
        **architecture,
        "in_channels": in_channels,
        "num_outputs": demo["architecture"]["num_outputs"],
    }
    labels = [{**label, "threshold": 0.98} for label in demo["labels"]]
    labels[0]["threshold"] = 0.02  # one positive finding: Grad-CAM is part of the timing
    suffix = "" if batch_size is None else f"-b{batch_size}"
    package = f"{name}-real{suffix}"
    manifest = {
        **{
            key: demo[key]
            for key in ("analyzer", "intended_use", "modalities", "body_parts", "views")
        },
        "name": package,
        "version": "bench-random",
        "clinical_use": False,
        "architecture": architecture,
        "input": spec,
        "labels": labels,
        "training": {"source": "random initialisation (benchmark only)"},
    }
    torch.manual_seed(0)
    network = build_network(ArchitectureSpec.model_validate(architecture))
    write_package(models_dir / package, manifest, network.state_dict())
    return package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--analyzers", default=",".join(ANALYZERS))
    parser.add_argument(
        "--densenet121", action="store_true", help="also time DenseNet-121 at 224 px"
    )
    parser.add_argument(
        "--models-dir", type=Path, help="default: a temporary copy of the demo packages"
    )
    parser.add_argument("--json", type=Path, help="write the results here as well")
    parser.add_argument(
        "--real-size", action="store_true", help="also time real-size random networks"
    )
    parser.add_argument("--threads", default="", help="real-size rows per thread count: 1,2")
    parser.add_argument("--batch-sizes", default="", help="real-size rows per batch size: 1,16")
    args = parser.parse_args(argv)

    import torch

    from models.demo import ensure_demo_packages
    from models.package_registry import PackageRegistry
    from models.runtime import configure_cpu_threads, resolve_device

    device = resolve_device(args.device)
    threads = configure_cpu_threads() if device.type == "cpu" else torch.get_num_threads()
    names = [name for name in args.analyzers.split(",") if name]
    with tempfile.TemporaryDirectory(prefix="pacsflow-bench-models-") as scratch:
        models_dir = args.models_dir or Path(scratch)
        ensure_demo_packages(models_dir, [name for name in names if name in ANALYZERS])
        if args.densenet121:
            densenet121_package(models_dir)
            names.append("chest-xray-d121")
        real: list[tuple[str, int | None]] = []
        if args.real_size:
            batches = [int(b) for b in args.batch_sizes.split(",") if b] or [None]
            for name in [n for n in names if n in REAL_SIZE]:
                for batch in batches:
                    for count in [int(t) for t in args.threads.split(",") if t] or [None]:
                        real.append((real_size_package(models_dir, name, batch), count))
        registry = PackageRegistry(models_dir, str(device), allow_non_clinical=True)
        environment = {
            "device": str(device),
            "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "cpu_threads": threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
            "load_average_1_5_15": [round(value, 2) for value in os.getloadavg()],
        }
        print(json.dumps(environment), flush=True)
        header = (
            f"{'analyzer':<28} {'device':<6} {'n':>3} {'img/study':>9} {'p50 s':>8} {'p95 s':>8} "
            f"{'img/s':>8} {'net share':>9} {'target s':>8} ok"
        )
        print(header)
        results = []
        runs: list[tuple[str, int | None]] = [(name, None) for name in names] + real
        for name, count in runs:
            if count is not None and device.type == "cpu":
                torch.set_num_threads(count)
            row = bench_one(registry, name, args.studies, args.warmup)
            row["threads"] = torch.get_num_threads() if device.type == "cpu" else None
            row["batch_size"] = registry.get(name).manifest.input.batch_size
            name = f"{name}@{row['threads']}t" if count is not None else name
            row["analyzer"] = name
            results.append(row)
            target = "-" if row["target_s"] is None else f"{row['target_s']:.1f}"
            verdict = {True: "yes", False: "NO", None: "-"}[row["meets_target"]]
            print(
                f"{row['analyzer']:<28} {row['device']:<6} {row['studies']:>3} "
                f"{row['images_per_study']:>9.0f} {row['p50_s']:>8.3f} {row['p95_s']:>8.3f} "
                f"{row['images_per_s']:>8.1f} {row['network_share']:>9.2f} {target:>8} {verdict}",
                flush=True,
            )
        if args.json:
            args.json.write_text(
                json.dumps({"environment": environment, "results": results}, indent=2)
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
