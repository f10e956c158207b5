"""`pacsflow serve` as a site runs it: one command, its children up, all stopped by Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from deployments.orthanc import free_port
from tests.fix_dcmtk import echoscu
from tests.fix_orthanc import NODE_AE_TITLE

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def site_env(settings_factory, node_port, prefect_api_url, tmp_path):
    settings = settings_factory()
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PACSFLOW_CONFIG": "",
        "PACSFLOW_DATABASE__URL": settings.database.url,
        "PACSFLOW_NODE__STORAGE_DIR": str(tmp_path / "storage"),
        "PACSFLOW_NODE__PORT": str(node_port),
        "PACSFLOW_NODE__AE_TITLE": NODE_AE_TITLE,
        "PACSFLOW_NODE__ALLOWED_CALLERS": '["MODALITY"]',
        "PACSFLOW_WORKER__COUNT": "0",
        "PACSFLOW_ESCALATION__LISTEN_PORT": str(free_port()),
        "PACSFLOW_HL7__PORT": str(free_port()),
        "PACSFLOW_CONSOLE__PORT": str(free_port()),
        "PACSFLOW_CONSOLE_SECRET": "serve-test-console-secret-0123456789",
        "PREFECT_API_URL": prefect_api_url,
        "PACSFLOW_ESCALATION_API_TOKEN": "serve-test-metrics-token",
    }


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return False
    return True


def test_serve_starts_the_site_and_ctrl_c_stops_every_child(
    site_env, node_port, tmp_path, dcmtk_tools, make_syslog_collector, clean_database_url
):
    collector = make_syslog_collector("tcp")
    site_env = {
        **site_env,
        "PACSFLOW_AUDIT__SYSLOG_HOST": "127.0.0.1",
        "PACSFLOW_AUDIT__SYSLOG_PORT": str(collector.port),
        "PACSFLOW_AUDIT__SYSLOG_TRANSPORT": "tcp",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "serve"],
        env=site_env,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while echoscu("MODALITY", NODE_AE_TITLE, node_port).returncode != 0:
            assert process.poll() is None, "serve exited"
            assert time.monotonic() < deadline, "the node never answered C-ECHO"
            time.sleep(0.3)
        children = psutil.Process(process.pid).children(recursive=True)
        commands = [" ".join(child.cmdline()) for child in children]
        assert any("deployments.cli node" in c for c in commands)
        # [worker] count = 0: the work-pool route hands studies to the pool; the Runner
        # serves the other deployments
        assert any("deployments.cli dispatcher" in c for c in commands)
        assert any(c.endswith("deployments.cli runner") for c in commands)
        assert any("deployments.cli escalation-service" in c for c in commands)
        assert any("deployments.cli hl7-listener" in c for c in commands)
        assert any("deployments.cli emr-sender" in c for c in commands)
        assert any("deployments.cli results-sender" in c for c in commands)
        assert any("deployments.cli console" in c for c in commands)
        console = f"http://127.0.0.1:{site_env['PACSFLOW_CONSOLE__PORT']}"
        while True:  # the console answers, and sends a visitor to its login page
            try:
                answer = httpx.get(console + "/", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline + 30, "the console never answered"
                time.sleep(0.3)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        assert any("deployments.cli audit-sender" in c for c in commands)
        # Every child counts into one multiprocess folder under the storage dir, and the
        # escalation service's /metrics adds them up: the node's rejection shows there.
        metrics_dir = str(tmp_path / "storage" / "metrics")
        assert all(
            child.environ().get("PROMETHEUS_MULTIPROC_DIR") == metrics_dir
            for child in children
            if "deployments.cli" in " ".join(child.cmdline())
        )
        assert echoscu("STRANGER", NODE_AE_TITLE, node_port).returncode != 0
        metrics_url = f"http://127.0.0.1:{site_env['PACSFLOW_ESCALATION__LISTEN_PORT']}/metrics"
        token = {"Authorization": "Bearer serve-test-metrics-token"}
        while "pacsflow_node_associations_rejected_total 1.0" not in (
            text := httpx.get(metrics_url, headers=token, timeout=5).text
            if _answers(metrics_url)
            else ""
        ):
            assert time.monotonic() < deadline + 60, f"no node counter in /metrics: {text}"
            time.sleep(0.3)
        # The start is audited with the settings' digest, and reaches the collector.
        started = next(
            entry
            for entry in collector.wait_for(1, timeout=90)  # a child starting on a busy machine
            if entry["event_id"] == "110100" and entry["event_types"] == ["110120"]
        )
        assert started["audit_source_id"]
        process.send_signal(signal.SIGINT)
        assert process.wait(60) == 0
        _gone, alive = psutil.wait_procs(children, timeout=10)
        assert not alive, f"children still running: {[p.cmdline() for p in alive]}"
        assert echoscu("MODALITY", NODE_AE_TITLE, node_port).returncode != 0
        with psycopg.connect(clean_database_url) as conn:
            kinds = [row[0] for row in conn.execute("SELECT kind FROM audit_records ORDER BY id")]
        assert kinds[0] == "application_start" and kinds[-1] == "application_stop"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
