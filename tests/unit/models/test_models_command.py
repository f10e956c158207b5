"""``pacsflow models``: list with checksum status, show a manifest, verify exits 1 on refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments.cli import main
from tests.fix_models import TinyFactory


def _tamper(path: Path) -> None:
    weights = bytearray((path / "weights.pt").read_bytes())
    weights[-10] ^= 0x01
    (path / "weights.pt").write_bytes(bytes(weights))


def test_list_shows_version_and_checksum_status(
    tiny_package_factory: TinyFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    tiny_package_factory("chest-xray", directory=models)
    assert main(["models", "--models-dir", str(models), "list"]) == 0
    output = capsys.readouterr().out
    assert "chest-xray" in output and "0.0.0-test" in output and " ok " in output
    _tamper(models / "chest-xray")
    main(["models", "--models-dir", str(models), "list"])
    assert "mismatch" in capsys.readouterr().out


def test_verify_exits_one_and_names_the_refused_package(
    tiny_package_factory: TinyFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    tiny_package_factory("chest-xray", directory=models)
    assert main(["models", "--models-dir", str(models), "verify"]) == 0
    assert "ok      chest-xray" in capsys.readouterr().out
    _tamper(models / "chest-xray")
    assert main(["models", "--models-dir", str(models), "verify", "chest-xray", "head-ct-ich"]) == 1
    output = capsys.readouterr().out
    assert "REFUSED chest-xray" in output and "SHA-256" in output
    assert "REFUSED head-ct-ich" in output and "not found" in output


def test_show_prints_labels_with_codes_and_tiers(
    tiny_package_factory: TinyFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    tiny_package_factory("chest-xray", directory=models)
    assert main(["models", "--models-dir", str(models), "show", "chest-xray"]) == 0
    output = capsys.readouterr().out
    assert "Tension Pneumothorax" in output and "Critical" in output
    assert "SCT 36118008" in output and "clinical use: NO" in output
    assert main(["models", "--models-dir", str(models), "show", "nothing"]) == 1


def test_show_and_verify_say_when_a_package_has_no_input_domain(
    tiny_package_factory: TinyFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    tiny_package_factory("chest-xray", directory=models)
    assert main(["models", "--models-dir", str(models), "show", "chest-xray"]) == 0
    assert "domain: NONE: out-of-domain images are not detected" in capsys.readouterr().out
    assert main(["models", "--models-dir", str(models), "verify", "chest-xray"]) == 0
    assert "domain: NONE" in capsys.readouterr().out
