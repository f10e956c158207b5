"""Model packages: manifest validation and the one loading path (checksum, shapes, labels)."""

from __future__ import annotations

import io
import json
import zipfile
from collections import OrderedDict
from datetime import date
from pathlib import Path

import pytest
import torch

from integrations.errors import PackageError
from models.labels import CHEST_CORE_LABELS
from models.loading import inspect_package, load_package, read_manifest, sha256_of
from models.package import DEMO_NOTICE, parse_manifest
from tests.fix_models import TinyFactory, tiny_manifest

CPU = torch.device("cpu")


def _valid_document() -> dict[str, object]:
    document = tiny_manifest("chest-xray")
    document["weights"] = {"file": "weights.pt", "sha256": "0" * 64}
    return document


def test_valid_manifest_parses_with_codes_thresholds_and_tiers() -> None:
    manifest = parse_manifest(_valid_document(), "test")
    pneumothorax = manifest.label("Pneumothorax")
    assert pneumothorax.code.concept().value == "36118008"
    assert pneumothorax.code.scheme == "SCT"
    assert manifest.label("Tension Pneumothorax").tier.value == "Critical"
    assert manifest.identity().weights_sha256 == "0" * 64


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["labels"][0].update(threshold=1.5), "threshold"),
        (lambda d: d["labels"][1].update(name=d["labels"][0]["name"]), "labels repeated"),
        (lambda d: d["labels"][0].update(output_index=99), "beyond the network"),
        (lambda d: d["architecture"].update(in_channels=3), "channels"),
        (lambda d: d["weights"].update(sha256="xyz"), "64 hexadecimal"),
        (lambda d: d["weights"].update(file="../evil.pt"), "plain file name"),
        (lambda d: d.update(name="Chest X-ray!"), "lower-case"),
        (lambda d: d["training"].update(source="generated") or d.update(clinical_use=True), "demo"),
        (lambda d: d["labels"][0].pop("code"), "code"),
        (lambda d: d.update(sequences=["T1 post-contrast", "T3"]), "unknown MR sequences"),
        (lambda d: d.update(sequences=["excluded"]), "unknown MR sequences"),
        (lambda d: d.update(sequences=["T2", "T2"]), "named twice"),
    ],
)
def test_invalid_manifest_is_refused_naming_the_field(change, message: str) -> None:
    document = _valid_document()
    change(document)
    with pytest.raises(PackageError) as refused:
        parse_manifest(document, "pkg-under-test")
    assert "pkg-under-test" in str(refused.value)
    assert message in str(refused.value)


def test_sequences_are_optional_and_kept_in_order() -> None:
    assert parse_manifest(_valid_document(), "old").sequences == []
    document = {**_valid_document(), "sequences": ["T1 post-contrast", "T1"]}
    assert parse_manifest(document, "mr").sequences == ["T1 post-contrast", "T1"]


def test_written_package_loads_through_the_one_path(tiny_package_factory: TinyFactory) -> None:
    path = tiny_package_factory("chest-xray")
    package = load_package(path, CPU, CHEST_CORE_LABELS)
    assert package.manifest.name == "chest-xray"
    assert not package.network.training
    weights = (path / "weights.pt").read_bytes()
    assert package.manifest.weights.sha256 == sha256_of(weights)
    assert inspect_package(path).checksum == "ok"


def test_checksum_mismatch_is_refused_with_a_message_naming_the_package(
    tiny_package_factory: TinyFactory,
) -> None:
    path = tiny_package_factory("chest-xray")
    weights = bytearray((path / "weights.pt").read_bytes())
    weights[len(weights) // 2] ^= 0xFF
    (path / "weights.pt").write_bytes(bytes(weights))
    with pytest.raises(PackageError) as refused:
        load_package(path, CPU)
    text = str(refused.value)
    assert "'chest-xray'" in text and str(path) in text and "SHA-256" in text
    assert inspect_package(path).checksum == "mismatch"


def test_shape_mismatch_is_refused_naming_the_tensor(tiny_package_factory: TinyFactory) -> None:
    path = tiny_package_factory("chest-xray")
    state = torch.load(path / "weights.pt", weights_only=True)
    state["classifier.weight"] = torch.zeros(5, state["classifier.weight"].shape[1])
    state["classifier.bias"] = torch.zeros(5)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    (path / "weights.pt").write_bytes(data)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["weights"]["sha256"] = sha256_of(data)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError) as refused:
        load_package(path, CPU)
    assert "classifier.weight (5," in str(refused.value)
    assert "shape mismatch" in str(refused.value)


def test_a_label_the_analyzer_needs_missing_is_refused(tiny_package_factory: TinyFactory) -> None:
    def drop_pneumothorax(manifest: dict) -> None:
        manifest["labels"] = [
            label for label in manifest["labels"] if label["name"] != "Pneumothorax"
        ]

    path = tiny_package_factory("chest-xray", edit=drop_pneumothorax)
    with pytest.raises(PackageError) as refused:
        load_package(path, CPU, CHEST_CORE_LABELS)
    assert "labels missing" in str(refused.value) and "Pneumothorax" in str(refused.value)


def test_pickled_code_is_refused_by_weights_only(tiny_package_factory: TinyFactory) -> None:
    path = tiny_package_factory("chest-xray")
    buffer = io.BytesIO()
    torch.save(OrderedDict(when=date(2025, 1, 1)), buffer)  # a non-tensor object
    data = buffer.getvalue()
    (path / "weights.pt").write_bytes(data)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["weights"]["sha256"] = sha256_of(data)
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(PackageError) as refused:
        load_package(path, CPU)
    assert "weights_only" in str(refused.value)


def test_zip_archive_package_loads(tiny_package_factory: TinyFactory, tmp_path: Path) -> None:
    folder = tiny_package_factory("chest-xray")
    archive = tmp_path / "chest-xray-1.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for item in folder.iterdir():
            handle.write(item, f"chest-xray/{item.name}")
    assert read_manifest(archive).name == "chest-xray"
    assert load_package(archive, CPU).manifest.name == "chest-xray"


def test_unreadable_manifest_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="not valid JSON"):
        read_manifest(folder)


def test_demo_notice_text_is_the_agreed_one() -> None:
    assert DEMO_NOTICE == "demo weights trained on generated images; not for clinical use"
