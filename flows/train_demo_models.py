"""train-demo-models: rebuild the demo model packages from their recipes (I/O).

One task per analyzer, run one after the other (each uses every CPU core): generate the
labelled phantom images, train the small network, pick thresholds on a validation split,
measure it on a held-out split, write the package (manifest with "demo weights trained on
generated images; not for clinical use", ``clinical_use: false``, the weights' SHA-256 and the
held-out metrics). ``--output models/demo/packages`` refreshes the committed packages::

    python -m flows.train_demo_models --output var/models
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task

FLOW_NAME = "train-demo-models"


@task(name="train_demo_package", persist_result=False)
def train_demo_package(name: str, output_dir: str, scale: float, seed: int) -> dict[str, Any]:
    from models.demo import build_demo_package
    from models.loading import read_manifest

    started = time.perf_counter()
    path = build_demo_package(name, Path(output_dir), scale=scale, seed=seed)
    manifest = read_manifest(path)
    held_out = manifest.training.get("held_out", {})
    get_run_logger().info("trained %s in %.0f s", name, time.perf_counter() - started)
    return {
        "name": name,
        "path": str(path),
        "sha256": manifest.weights.sha256,
        "seconds": round(time.perf_counter() - started, 1),
        "held_out_auc": {label: values.get("auc") for label, values in held_out.items()},
    }


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def train_demo_models(
    names: list[str] | None = None,
    output_dir: str | None = None,
    scale: float = 1.0,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Train the demo packages (default: all four) into ``output_dir`` (default: models dir)."""
    from models.demo import RECIPES

    if output_dir is None:
        from integrations.settings import load_settings

        output_dir = str(load_settings().models.dir)
    return [train_demo_package(name, output_dir, scale, seed) for name in names or list(RECIPES)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="default: all four analyzers")
    parser.add_argument("--output", help="models directory (default: [models] dir)")
    parser.add_argument("--scale", type=float, default=1.0, help="data/epoch scale (tests: 0.01)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    results = train_demo_models(args.names or None, args.output, args.scale, args.seed)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
