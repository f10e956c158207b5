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
