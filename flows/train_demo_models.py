"""train-demo-models: rebuild the demo model packages from their recipes (I/O).

One task per analyzer, run one after the other (each uses every CPU core): generate the
labelled phantom images, train the small network, pick thresholds on a validation split,
measure it on a held-out split, write the package (manifest with "demo weights trained on
generated images; not for clinical use", ``clinical_use: false``, the weights' SHA-256 and the
held-out metrics), then fit and calibrate its input-domain gate (``fit-domain``).
``--output models/demo/packages`` refreshes the committed packages. ``--fit-domain-only``
refits only the domain gate of the packages already there, from their weights as they are
(seconds to a minute each, no retraining)::

    python -m flows.train_demo_models --output var/models
    python -m flows.train_demo_models --output models/demo/packages --fit-domain-only
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


@task(name="fit_demo_domain", persist_result=False)
def fit_demo_domain_task(name: str, output_dir: str, scale: float) -> dict[str, Any]:
    from models.demo import fit_demo_domain
    from models.loading import read_manifest

    started = time.perf_counter()
    path = fit_demo_domain(name, Path(output_dir) / name, scale=scale)
    domain = read_manifest(path).domain
    assert domain is not None
    get_run_logger().info("fitted the domain of %s in %.0f s", name, time.perf_counter() - started)
    return {
        "name": name,
        "path": str(path),
        "domain_limit": domain.limit,
        "calibration": domain.calibration,
        "seconds": round(time.perf_counter() - started, 1),
    }


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
def train_demo_models(
    names: list[str] | None = None,
    output_dir: str | None = None,
    scale: float = 1.0,
    seed: int = 0,
    fit_domain_only: bool = False,
) -> list[dict[str, Any]]:
    """Train the demo packages (default: every demo recipe) into ``output_dir`` (default: models dir);
    with ``fit_domain_only``, refit only their input-domain gates."""
    from models.demo import RECIPES

    if output_dir is None:
        from integrations.settings import load_settings

        output_dir = str(load_settings().models.dir)
    if fit_domain_only:
        return [fit_demo_domain_task(name, output_dir, scale) for name in names or list(RECIPES)]
    return [train_demo_package(name, output_dir, scale, seed) for name in names or list(RECIPES)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="default: every demo analyzer")
    parser.add_argument("--output", help="models directory (default: [models] dir)")
    parser.add_argument("--scale", type=float, default=1.0, help="data/epoch scale (tests: 0.01)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--fit-domain-only", action="store_true", help="refit the domain gates, no retraining"
    )
    args = parser.parse_args(argv)
    results = train_demo_models(
        args.names or None, args.output, args.scale, args.seed, args.fit_domain_only
    )
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
