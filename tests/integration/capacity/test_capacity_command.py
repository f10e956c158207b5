"""``pacsflow capacity`` as an operator runs it: site file, bench JSON, plot, JSON and text."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fix_hl7 import ROOT, _environment

EXAMPLE = ROOT / "docs" / "capacity" / "hospital-300-beds.toml"


def capacity(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", "capacity", *options],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_worked_example_plans_and_plots(tmp_path: Path) -> None:
    plot = tmp_path / "plan.png"
    done = capacity("--site", str(EXAMPLE), "--hours", "40", "--plot", str(plot), "--json")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["workers_needed"] == 1
    assert plan["threshold_seconds"] == 600.0 and plan["percentile"] == 95.0
    assert {row["workers"] for row in plan["rows"]} == {1, 2}
    one = plan["rows"][0]
    assert one["meets_target"] and one["tiers"]["Critical"]["result_seconds"]["p95"] < 600
    assert 0.2 < one["utilisation"] < 0.35  # 0.28 workers of load offered
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_peak_beyond_one_worker_and_the_bench_source(tmp_path: Path) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "results": [
                    {"analyzer": "head-ct-ich", "device": "cpu", "p50_s": 50.0, "p95_s": 60.0}
                ]
            }
        )
    )
    site = tmp_path / "site.toml"
    site.write_text(
        'overhead_seconds = 1.0\nthreshold_minutes = 3\n[modalities.CT]\nanalyzer = "head-ct-ich"\n'
        "critical_share = 0.3\nurgent_share = 0.2\n"
    )
    done = capacity("--site", str(site), "--bench", str(bench), "--peak", "CT=100", "--hours", "40")
    assert done.returncode == 0, done.stderr
    # 100 studies/h of 51 s: 1.42 workers of load; the first row is 2 workers
    assert "offered load 1.4" in done.stdout
    assert "log-normal, median 51.00 s, p95 61.00 s" in done.stdout
    assert "head-ct-ich + 1 s overhead" in done.stdout
    needed = int(done.stdout.rsplit("needed: ", 1)[1].split()[0])
    assert needed >= 2
    assert capacity("--peak", "CT=10").returncode == 2  # no service time anywhere: said so
