"""`pacsflow demo --once`, the main job, on its embedded defaults with ports moved aside."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from deployments.orthanc import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs_every_study_to_the_pacs_the_emr_and_the_on_call_inbox(
    database_url, prefect_api_url, tmp_path
):
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PACSFLOW_CONFIG": str(REPO_ROOT / "pacsflow.toml"),
        "PACSFLOW_DATABASE__URL": database_url,
        "PACSFLOW_NODE__STORAGE_DIR": str(tmp_path / "demo"),
        "PACSFLOW_NODE__PORT": str(free_port()),
        "PACSFLOW_PACS__PORT": str(free_port()),
        "PACSFLOW_MODELS__DIR": str(tmp_path / "models"),
        "PACSFLOW_HL7__PORT": str(free_port()),
        "PACSFLOW_EMR__PORT": str(free_port()),
        "PACSFLOW_ESCALATION__SMTP_PORT": str(free_port()),
        "PACSFLOW_ESCALATION__LISTEN_PORT": str(free_port()),
        "PREFECT_API_URL": prefect_api_url,
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "deployments.cli",
            "demo",
            "--once",
            "--orthanc-http-port",
            str(free_port()),
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = done.stdout[done.stdout.index("pacsflow demo —") :]
    rows = [line for line in table.splitlines() if line.startswith("│ DEMO")]
    assert len(rows) == 8, table
    # every study's results reached the PACS and its ORU the EMR
    assert all(" objects)" in row for row in rows), table
    assert sum("+" in row.split("│")[7] for row in rows) == 8, table
    # Critical studies page the on-call inbox; the others never do
    for row in rows:
        cells = [cell.strip() for cell in row.split("│")]
        urgency, paged = cells[5], cells[8]
        assert bool(paged) == (urgency == "Critical"), row
    # the stroke pages the stroke on-call, the dissection the surgical on-call
    paged_to = {row.split("│")[1].strip(): row.split("│")[8] for row in rows}
    assert "stroke-oncall" in paged_to["DEMO0007"], table
    assert "surgery-oncall" in paged_to["DEMO0008"], table
    assert "not for clinical use" in table
    # a readable console: no per-request, per-PDU, per-SMTP-command or per-task chatter
    console = done.stdout + done.stderr
    for noise in ("HTTP Request:", 'HTTP/1.1"', "csrf-token", "Finished in state Completed()"):
        assert noise not in console, noise
    assert not [line for line in console.splitlines() if " mail.log" in line]
    assert "done: tier Critical" in console  # one line per study state change
