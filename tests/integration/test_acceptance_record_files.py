"""The written acceptance record: HTML, PDF by Debian's Chromium, signed JSON, and
`pacsflow acceptance verify` / `keygen` as an operator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from integrations.acceptance.record import CaseResult, StepResult, finish_record
from integrations.acceptance.report import verify_file, write_record

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", "acceptance", *args],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PACSFLOW_CONFIG": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def written(tmp_path):
    key = tmp_path / "key.pem"
    done = _cli("keygen", str(key))
    assert done.returncode == 0, done.stderr
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    case = CaseResult(
        case="A01",
        description="chest DX PA, tension pneumothorax",
        modality="DX",
        expected_tier="Critical",
        expected_findings=["Tension Pneumothorax"],
        study_key="S0123456789AB",
        found_tier="Critical",
        steps=[
            StepResult("arrival", True, 1.5, 30.0, "1 instances"),
            StepResult("escalation", False, None, 60.0, "no page delivered (surgery open)"),
        ],
    )
    record = finish_record(
        run_id="run1",
        started_at="2026-12-01T10:00:00+00:00",
        finished_at="2026-12-01T10:05:00+00:00",
        site={
            "node_ae_title": "PACSFLOW",
            "pacs_ae_title": "ORTHANC",
            "pacs_route": "REST",
            "worklist_route": "none",
            "result_carriers": ["sr", "gsps"],
            "settings_digest": "ab" * 32,
        },
        versions={"pacsflow": "0.1.0", "models": {}},
        cases=[case],
        source="generated",
    )
    out = write_record(record, tmp_path / "record", key, "/usr/bin/chromium")
    return out, key


def test_the_record_reads_as_blocked_and_every_file_verifies(written):
    out, key = written
    html = out.html_path.read_text()
    assert "BLOCKED" in html and "no page delivered (surgery open)" in html
    assert out.pdf_path.read_bytes().startswith(b"%PDF")
    for path in (out.json_path, out.html_path, out.pdf_path):
        assert verify_file(path, key.read_bytes()).intact
        done = _cli("verify", str(path), "--public-key", str(key))
        assert done.returncode == 0 and "intact" in done.stdout, done.stdout + done.stderr


def test_a_tampered_file_or_another_key_fails_verification(written, tmp_path):
    out, key = written
    pdf = bytearray(out.pdf_path.read_bytes())
    pdf[-20] ^= 1
    out.pdf_path.write_bytes(bytes(pdf))
    assert not verify_file(out.pdf_path, key.read_bytes()).intact
    assert _cli("verify", str(out.pdf_path), "--public-key", str(key)).returncode == 1
    # the JSON alone still verifies (its own signature is intact) but not beside a bad PDF
    assert not verify_file(out.json_path, key.read_bytes()).intact

    document = json.loads(out.json_path.read_text())
    document["record"]["go_live"] = "PASSED"
    out.json_path.write_text(json.dumps(document))
    done = _cli("verify", str(out.json_path), "--public-key", str(key))
    assert done.returncode == 1 and "TAMPERED" in done.stdout

    other = tmp_path / "other.pem"
    assert _cli("keygen", str(other)).returncode == 0
    assert _cli("keygen", str(other)).returncode == 1  # never overwrites a key
    assert _cli("verify", str(out.html_path), "--public-key", str(other)).returncode == 1
