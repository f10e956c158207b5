"""Reading model packages from disk and loading their weights (I/O).

The one path every package takes, demo or real: read ``manifest.json`` (folder or ``.zip``),
validate it, check the analyzer knows every label it needs, hash the weights file and compare
with the manifest's SHA-256, ``torch.load(..., weights_only=True)`` (tensors only, never
pickled code), compare every tensor name and shape with the network the manifest describes,
then load strictly. Each refusal is a :class:`PackageError` whose message names the package,
its path and what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from integrations.errors import PackageError
from models.domain import DomainModel
from models.networks import build_network
from models.package import MANIFEST_NAME, Manifest, parse_manifest

# torchvision's fix for DenseNet checkpoints saved before PyTorch 0.4 ("norm.1" → "norm1").
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


@dataclass(frozen=True)
class PackageFiles:
    """A package on disk: where it is and how to read its members."""

    path: Path

    @property
    def is_archive(self) -> bool:
        return self.path.is_file() and self.path.suffix == ".zip"

    def read(self, member: str) -> bytes:
        if self.is_archive:
            with zipfile.ZipFile(self.path) as archive:
                names = {
                    Path(name).name: name for name in archive.namelist() if not name.endswith("/")
                }
                if member not in names:
                    raise FileNotFoundError(f"{member} not in {self.path.name}")
                return archive.read(names[member])
        return (self.path / member).read_bytes()


@dataclass(frozen=True)
class PackageStatus:
    """What ``pacsflow models list`` shows for one package."""

    path: Path
    manifest: Manifest | None
    checksum: str  # "ok", "mismatch", "missing weights", "unreadable manifest", "domain ..."
    problem: str | None = None

    @property
    def name(self) -> str:
        return self.manifest.name if self.manifest else self.path.name

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class LoadedPackage:
    """A verified package with its network in eval mode on ``device``."""

    path: Path
    manifest: Manifest
    network: nn.Module
    device: torch.device
    domain: DomainModel | None = None  # None: the package declares no input domain


def is_package(path: Path) -> bool:
    if path.is_dir():
        return (path / MANIFEST_NAME).is_file()
    return path.is_file() and path.suffix == ".zip"


def read_manifest(path: Path) -> Manifest:
    files = PackageFiles(path)
    try:
        raw = files.read(MANIFEST_NAME)
    except (OSError, zipfile.BadZipFile) as error:
        raise PackageError(f"model package {path}: cannot read {MANIFEST_NAME}: {error}") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PackageError(
            f"model package {path}: {MANIFEST_NAME} is not valid JSON: {error}"
        ) from None
    return parse_manifest(data, str(path))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_weights(path: Path, manifest: Manifest) -> bytes:
    try:
        return PackageFiles(path).read(manifest.weights.file)
    except (OSError, zipfile.BadZipFile) as error:
        raise PackageError(
            f"model package {manifest.name!r} ({path}): weights file {manifest.weights.file} "
            f"cannot be read: {error}"
        ) from None


def _check_checksum(path: Path, manifest: Manifest, data: bytes) -> None:
    actual = sha256_of(data)
    if actual != manifest.weights.sha256:
        raise PackageError(
            f"model package {manifest.name!r} ({path}): SHA-256 of {manifest.weights.file} is "
            f"{actual}, the manifest says {manifest.weights.sha256}; refusing to load weights "
            "that are not the ones the manifest describes"
        )


def inspect_package(path: Path) -> PackageStatus:
    """Manifest and checksum check without loading the weights into a network."""
    try:
        manifest = read_manifest(path)
    except PackageError as error:
        return PackageStatus(path, None, "unreadable manifest", str(error))
    try:
        data = _read_weights(path, manifest)
    except PackageError as error:
        return PackageStatus(path, manifest, "missing weights", str(error))
    try:
        _check_checksum(path, manifest, data)
    except PackageError as error:
        return PackageStatus(path, manifest, "mismatch", str(error))
    try:
        load_domain(path, manifest)
    except PackageError as error:
        return PackageStatus(path, manifest, "domain file refused", str(error))
    return PackageStatus(path, manifest, "ok")


def load_domain(path: Path, manifest: Manifest) -> DomainModel | None:
    """The package's fitted domain (SHA-256 checked, tensors only), or None if it has none."""
    spec = manifest.domain
    if spec is None:
        return None
    where = f"model package {manifest.name!r} ({path})"
    try:
        data = PackageFiles(path).read(spec.file)
    except (OSError, zipfile.BadZipFile) as error:
        raise PackageError(f"{where}: domain file {spec.file} cannot be read: {error}") from None
    actual = sha256_of(data)
    if actual != spec.sha256:
        raise PackageError(
            f"{where}: SHA-256 of {spec.file} is {actual}, the manifest says {spec.sha256}; "
            "refusing domain statistics that are not the ones the manifest describes"
        )
    try:
        tensors = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        raise PackageError(f"{where}: {spec.file} cannot be loaded: {error}") from None
    if not isinstance(tensors, Mapping) or not {"mean", "precision"} <= set(tensors):
        raise PackageError(f"{where}: {spec.file} lacks the mean and precision tensors")
    mean, precision = tensors["mean"], tensors["precision"]
    features = manifest.architecture.feature_count
    if tuple(mean.shape) != (features,) or tuple(precision.shape) != (features, features):
        raise PackageError(
            f"{where}: {spec.file} holds a {tuple(mean.shape)} mean and a "
            f"{tuple(precision.shape)} precision; the network has {features} features"
        )
    return DomainModel.from_tensors(spec, dict(tensors))


def _state_dict_from(obj: object, where: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in obj.items()
    ):
        raise PackageError(f"{where}: the weights file is not a state dict of named tensors")
    state = {}
    for key, value in obj.items():
        key = key.removeprefix("module.")  # saved from DataParallel
        match = _OLD_DENSENET_KEY.match(key)
        state[match.group(1) + match.group(2) if match else key] = value
    return state


def check_state_dict(network: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """Refuse unless ``state`` has exactly the network's tensors with the same shapes."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{key} {tuple(state[key].shape)} (network expects {tuple(expected[key].shape)})"
        for key in expected
        if key in state and tuple(state[key].shape) != tuple(expected[key].shape)
    ]
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched[:5]))
    if missing:
        problems.append(f"{len(missing)} tensors missing, e.g. " + ", ".join(missing[:3]))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors, e.g. " + ", ".join(unexpected[:3]))
    if problems:
        raise PackageError(
            f"{where}: weights do not fit the architecture in the manifest: " + " | ".join(problems)
        )


def check_labels(manifest: Manifest, required: Sequence[str], path: Path) -> None:
    names = {label.name for label in manifest.labels}
    missing = [name for name in required if name not in names]
    if missing:
        raise PackageError(
            f"model package {manifest.name!r} ({path}): labels missing that analyzer "
            f"{manifest.analyzer!r} requires: {', '.join(missing)}"
        )


def load_package(
    path: Path, device: torch.device, required_labels: Sequence[str] = ()
) -> LoadedPackage:
    """Verify and load one package; :class:`PackageError` on any refusal."""
    manifest = read_manifest(path)
    where = f"model package {manifest.name!r} ({path})"
    check_labels(manifest, required_labels, path)
    data = _read_weights(path, manifest)
    _check_checksum(path, manifest, data)
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in many types
        raise PackageError(
            f"{where}: {manifest.weights.file} cannot be loaded with weights_only=True "
            f"(only tensors are accepted, never pickled code): {error}"
        ) from None
    state = _state_dict_from(loaded, where)
    network = build_network(manifest.architecture)
    check_state_dict(network, state, where)
    network.load_state_dict(state, strict=True)
    network.eval()
    network.to(device)
    if device.type == "cuda":  # NHWC lets cuDNN use tensor cores for float16 convolutions
        network.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # input sizes are fixed per package
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    domain = load_domain(path, manifest)
    return LoadedPackage(
        path=path, manifest=manifest, network=network, device=device, domain=domain
    )


def write_package(
    directory: Path, manifest_data: dict[str, object], state_dict: Mapping[str, torch.Tensor]
) -> Manifest:
    """Write a package folder: weights as a tensor-only file, manifest with its SHA-256.

    ``manifest_data`` is the manifest without ``weights.sha256`` (it is filled in here).
    The folder is written in place; callers building into a live models directory write to
    a temporary sibling and rename it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(
        {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}, buffer
    )
    data = buffer.getvalue()
    weights = dict(manifest_data.get("weights") or {})  # type: ignore[call-overload]
    weights.setdefault("file", "weights.pt")
    weights["sha256"] = sha256_of(data)
    document = {**manifest_data, "weights": weights}
    manifest = parse_manifest(document, str(directory))
    (directory / manifest.weights.file).write_bytes(data)
    (directory / MANIFEST_NAME).write_text(
        json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    return manifest


def write_domain(
    directory: Path, domain_data: dict[str, object], tensors: Mapping[str, torch.Tensor]
) -> Manifest:
    """Add (or replace) a package folder's fitted domain: ``domain.pt`` and the manifest entry.

    ``domain_data`` is the manifest's ``domain`` without ``sha256``. The weights are untouched.
    """
    manifest = read_manifest(directory)
    buffer = io.BytesIO()
    torch.save({key: value.detach().cpu().contiguous() for key, value in tensors.items()}, buffer)
    data = buffer.getvalue()
    domain = {"file": "domain.pt", **domain_data, "sha256": sha256_of(data)}
    document = {**manifest.model_dump(mode="json"), "domain": domain}
    updated = parse_manifest(document, str(directory))
    assert updated.domain is not None
    (directory / updated.domain.file).write_bytes(data)
    (directory / MANIFEST_NAME).write_text(
        json.dumps(updated.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8"
    )
    return updated
