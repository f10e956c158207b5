"""``pacsflow escalation-service`` as a site runs it: a separate process with a TOML file and
secrets in the environment, re-sending to the backup, acknowledged over HTTP, stopped by
SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from deployments.orthanc import free_port
from integrations.db.escalations import EscalationStore
from tasks.escalation import escalate
from tests.integration.escalation.conftest import MONITORING, console_login

REPO = Path(__file__).resolve().parents[3]


def config_file(site, port: int, *, secret_in_file: bool = False) -> Path:
    smtp = site.smtp
    secret = 'webhook_secret = "do-not-do-this"\n' if secret_in_file else ""
    text = f"""
[escalation]
base_url = "https://pacsflow.hospital.test"
listen_host = "127.0.0.1"
listen_port = {port}
ack_timeout_seconds = 1.0
poll_seconds = 0.2
smtp_host = "{smtp.host}"
smtp_port = {smtp.port}
webhook_url = "{site.http.url("/hooks/all")}"
{secret}
[escalation.people.surg1]
name = "Dr Sam Surgeon"
email = "surg1@hospital.test"

[escalation.people.surg2]
name = "Dr Bea Backup"
email = "surg2@hospital.test"

[escalation.teams.surgery]
channels = ["email"]
on_call = [{{person = "surg1"}}]
backups = ["surg2"]
"""
    path = site.tmp_path / "pacsflow.toml"
    path.write_text(text)
    return path


def start(site, config: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PACSFLOW_DATABASE__URL": site.settings.database.url,
        "PACSFLOW_NODE__STORAGE_DIR": str(site.settings.node.storage_dir),
        "PACSFLOW_ESCALATION__WEBHOOK_SECRET": "secret-from-the-environment",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "--config", str(config), "escalation-service"],
        cwd=site.tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_healthy(process: subprocess.Popen, url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"service exited: {process.stdout.read()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("service did not become healthy")


def test_service_process_escalates_to_the_backup_and_takes_the_acknowledgement(make_site):
    port = free_port()
    # the flow's side (escalate task) and the service read the same site configuration
    site = make_site(
        escalation={
            "ack_timeout_seconds": 1.0,
            "teams": {"surgery": {"channels": ["email"], "delivery": "first"}},
        }
    )
    process = start(site, config_file(site, port))
    try:
        wait_healthy(process, f"http://127.0.0.1:{port}/healthz")
        context = site.closed_study("svc-1")
        escalate.fn(context, [site.analysis(context, [("Tension Pneumothorax", 0.9)])])
        site.smtp.wait_for("surg1@hospital.test")
        # nobody acknowledges: the service process re-sends and reaches the backup
        (backup,) = site.smtp.wait_for("surg2@hospital.test", timeout=15)
        assert "https://pacsflow.hospital.test/ack/" in backup.body  # the service's base URL
        (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
        answer = httpx.post(
            f"http://127.0.0.1:{port}/api/ack/{record.ack_token}",
            json={"by": "surg1"},  # ignored: the console login names who acknowledged
            cookies=console_login("surg2", "Dr Bea Backup"),
        )
        assert answer.status_code == 200
        assert answer.json()["escalation"]["acknowledged_by"] == "surg2 (Dr Bea Backup)"
        settled = len(site.smtp.received())
        time.sleep(2.0)
        assert len(site.smtp.received()) == settled
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=MONITORING).text
        assert 'pacsflow_escalations{state="acknowledged"} 1' in metrics
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, output


def test_service_refuses_a_secret_in_the_configuration_file(make_site):
    site = make_site()
    process = start(site, config_file(site, free_port(), secret_in_file=True))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "PACSFLOW_ESCALATION__WEBHOOK_SECRET" in output
