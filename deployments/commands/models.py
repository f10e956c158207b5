"""``pacsflow models list|show|verify|demo``: the model packages of a site (I/O).

``list`` shows every package in the models directory with its version and checksum status;
``show NAME`` prints a manifest (labels with codes, thresholds and tiers, input, training);
``verify [NAME...]`` loads packages exactly as the worker will (checksum, tensor names and
shapes, labels) and exits 1 naming every refusal, including routed analyzers that have no
package; ``demo`` installs the committed demo packages (``--train`` retrains them instead);
``fit-domain [NAME...]`` fits and calibrates the input domain of demo packages from their
weights as they are, on generated studies (no retraining). ``show`` and ``verify`` say each
package's input domain (score limit, calibration), or that it has none: such a package (only
a non-clinical one can lack it) cannot tell an image unlike its training data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from integrations.errors import PackageError
from integrations.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("models", help="list, show, verify and install model packages")
    parser.add_argument(
        "--models-dir", type=Path, help="models directory (default: [models] dir of the config)"
    )
    actions = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    actions.add_parser("list", help="packages with version and checksum status")
    show = actions.add_parser("show", help="one package's manifest")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print the manifest as JSON")
    verify = actions.add_parser("verify", help="load packages as a worker would; exit 1 on refusal")
    verify.add_argument("names", nargs="*", help="default: every package and routed analyzer")
    demo = actions.add_parser(
        "demo", help="install the demo packages (trained on generated images)"
    )
    demo.add_argument("names", nargs="*", help="default: all four analyzers")
    demo.add_argument("--train", action="store_true", help="retrain from the recipes (minutes)")
    fit = actions.add_parser(
        "fit-domain", help="fit the input-domain gate of demo packages (no retraining)"
    )
    fit.add_argument("names", nargs="*", help="default: all four demo analyzers")
    fit.add_argument("--scale", type=float, default=1.0, help="study counts scale (tests: 0.1)")
    parser.set_defaults(handler=run)


def _models_dir(args: argparse.Namespace) -> tuple[Path, list[str], str]:
    if args.models_dir is not None:
        return args.models_dir.resolve(), [], "auto"
    settings = load_settings(args.config)
    return settings.models.dir, settings.analyzer_names(), settings.models.device


def run(args: argparse.Namespace) -> int:
    from models.package_registry import PackageRegistry

    models_dir, routed, device = _models_dir(args)
    # Listing and verifying read and check packages; nothing reaches a patient from here.
    registry = PackageRegistry(models_dir, device, allow_non_clinical=True)
    command = args.models_command
    if command == "list":
        return _list(registry, routed)
    if command == "show":
        return _show(registry, args.name, args.json)
    if command == "fit-domain":
        return _fit_domain(registry, args.names, args.scale)
    if command == "verify":
        return _verify(registry, args.names or sorted(set(registry.package_paths()) | set(routed)))
    return _demo(models_dir, args.names or None, args.train)


def _list(registry: object, routed: list[str]) -> int:
    from models.package_registry import PackageRegistry

    assert isinstance(registry, PackageRegistry)
    statuses = registry.statuses()
    print(f"models directory: {registry.models_dir}")
    if not statuses:
        print("(no packages)")
    header = f"{'NAME':<18} {'VERSION':<18} {'ANALYZER':<16} {'CLINICAL':<8} {'CHECKSUM':<18} PATH"
    print(header)
    for status in statuses:
        manifest = status.manifest
        print(
            f"{status.name:<18} {manifest.version if manifest else '-':<18} "
            f"{manifest.analyzer if manifest else '-':<16} "
            f"{('yes' if manifest.clinical_use else 'no') if manifest else '-':<8} "
            f"{status.checksum:<18} {status.path}"
        )
    names = {status.name for status in statuses}
    for name in routed:
        if name not in names:
            print(f"{name:<18} {'-':<18} {'-':<16} {'-':<8} {'MISSING':<18} (routed, no package)")
    return 0


def _show(registry: object, name: str, as_json: bool) -> int:
    from models.loading import read_manifest
    from models.package_registry import PackageRegistry

    assert isinstance(registry, PackageRegistry)
    paths = registry.package_paths().get(name)
    if not paths:
        raise PackageError(f"no package named {name!r} in {registry.models_dir}")
    manifest = read_manifest(paths[0])
    if as_json:
        print(json.dumps(manifest.model_dump(mode="json"), indent=2))
        return 0
    print(
        f"{manifest.name} {manifest.version} ({manifest.manufacturer}), analyzer {manifest.analyzer}"
    )
    print(f"path: {paths[0]}")
    print(f"intended use: {manifest.intended_use}")
    print(f"clinical use: {'yes' if manifest.clinical_use else 'NO'}")
    if manifest.notice:
        print(f"notice: {manifest.notice}")
    print(
        f"for: modality {', '.join(manifest.modalities)}; body part "
        f"{', '.join(manifest.body_parts) or 'any'}; view {', '.join(manifest.views) or 'any'}"
    )
    architecture = manifest.architecture
    shape = (
        f"ResNet-{architecture.depth}"
        if architecture.family == "resnet"
        else f"DenseNet growth {architecture.growth_rate}, blocks {architecture.block_config}"
    )
    print(
        f"network: {shape}, {architecture.in_channels} input channel(s), "
        f"{architecture.num_outputs} outputs"
    )
    spec = manifest.input
    print(
        f"input: {spec.size[0]}x{spec.size[1]}, windowing {spec.windowing}, channels "
        f"{', '.join(spec.channels)}, context slices {spec.context_slices}"
    )
    print(f"weights: {manifest.weights.file} sha256 {manifest.weights.sha256}")
    print(f"domain: {domain_line(manifest)}")
    held_out = manifest.training.get("held_out", {})
    print(f"{'LABEL':<30} {'CODE':<34} {'THRESH':>6} {'TIER':<9} HELD-OUT AUC")
    for label in manifest.labels:
        code = f"{label.code.scheme} {label.code.value}"
        auc = held_out.get(label.name, {}).get("auc")
        print(
            f"{label.name:<30} {code:<34} {label.threshold:>6.3f} {label.tier.value:<9} "
            f"{'-' if auc is None else f'{auc:.3f}'}"
        )
    return 0


def _verify(registry: object, names: list[str]) -> int:
    from models.package_registry import PackageRegistry

    assert isinstance(registry, PackageRegistry)
    if not names:
        print(f"no packages in {registry.models_dir} and no routed analyzers", file=sys.stderr)
        return 1
    refused = 0
    for name in names:
        try:
            analyzer = registry.get(name)
        except PackageError as error:
            refused += 1
            print(f"REFUSED {name}: {error}")
            continue
        identity = analyzer.identity
        print(
            f"ok      {name} {identity.version} sha256 {identity.weights_sha256[:16]}…; "
            f"domain: {domain_line(analyzer.manifest)}"
        )
    return 1 if refused else 0


def domain_line(manifest: object) -> str:
    """One line on a package's input-domain gate, or the warning that it has none."""
    from models.package import Manifest

    assert isinstance(manifest, Manifest)
    domain = manifest.domain
    if domain is None:
        return "NONE: out-of-domain images are not detected (fit one: pacsflow models fit-domain)"
    calibration = domain.calibration
    return (
        f"{domain.score} per {domain.unit}, limit {domain.limit:g}; calibration: in-domain "
        f"false rejection {calibration.get('in_domain_false_rejection')}, out-of-domain "
        f"detection {calibration.get('ood_detection')}, score AUC {calibration.get('score_auc')}"
        f"; {domain.file} sha256 {domain.sha256[:16]}…"
    )


def _fit_domain(registry: object, names: list[str], scale: float) -> int:
    from models.demo import fit_demo_domain
    from models.domain_fit import DEMO_DOMAINS
    from models.loading import read_manifest
    from models.package_registry import PackageRegistry

    assert isinstance(registry, PackageRegistry)
    paths = registry.package_paths()
    for name in names or list(DEMO_DOMAINS):
        if name not in paths:
            raise PackageError(f"no package named {name!r} in {registry.models_dir}")
        fit_demo_domain(name, paths[name][0], scale=scale)
        registry.forget(name)
        print(f"{name}: domain {domain_line(read_manifest(paths[name][0]))}")
    return 0


def _demo(models_dir: Path, names: list[str] | None, train: bool) -> int:
    from models.demo import RECIPES, build_demo_package, ensure_demo_packages

    if train:
        for name in names or list(RECIPES):
            print(f"training {name} (minutes on a small CPU)...", flush=True)
            print(build_demo_package(name, models_dir))
        return 0
    for path in ensure_demo_packages(models_dir, names):
        print(path)
    return 0
