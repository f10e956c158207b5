"""A worker refuses to start on non-clinical model packages unless the site allows them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.fix_models import TinyFactory

REPO_ROOT = Path(__file__).resolve().parents[2]
BRAIN_RULE = (
    '[{"name": "brain", "modality": ["MR"], "body_part": ["HEAD"],'
    ' "analyzers": ["brain-mri-tumor"]}]'
)


def test_worker_refuses_a_non_clinical_package_and_starts_when_allowed(
    settings_factory, tiny_package_factory: TinyFactory, tmp_path: Path
) -> None:
    settings = settings_factory()
    models = tmp_path / "models"
    tiny_package_factory("brain-mri-tumor", directory=models)  # clinical_use: false
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PACSFLOW_CONFIG": "",
        "PACSFLOW_DATABASE__URL": settings.database.url,
        "PACSFLOW_NODE__STORAGE_DIR": str(tmp_path / "storage"),
        "PACSFLOW_MODELS__DIR": str(models),
        "PACSFLOW_MODELS__DEVICE": "cpu",
        "PACSFLOW_ROUTING__RULES": BRAIN_RULE,
    }
    refused = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "worker"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1, refused.stderr
    assert "'brain-mri-tumor'" in refused.stderr and "not for clinical use" in refused.stderr
    assert "[models] allow_non_clinical = true" in refused.stderr

    allowed = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "worker", "--name", "allowed"],
        env={**env, "PACSFLOW_MODELS__ALLOW_NON_CLINICAL": "true"},
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert allowed.stderr is not None
        deadline = time.monotonic() + 90
        lines = []
        while time.monotonic() < deadline:
            line = allowed.stderr.readline()
            if not line:
                break
            lines.append(line)
            if "waiting for studies" in line:
                break
        text = "".join(lines)
        assert "waiting for studies" in text, text
        assert "NOT FOR CLINICAL USE" in text
    finally:
        allowed.send_signal(signal.SIGINT)
        allowed.wait(30)
