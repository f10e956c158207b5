"""``pacsflow console`` as a site runs it: a process with a TOML file and the session secret in
the environment; without the secret it refuses to start (I/O)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from deployments.orthanc import free_port
from tests.fix_slapd import PEOPLE, ROLE_GROUPS
from tests.integration.console.conftest import SECRET

REPO = Path(__file__).resolve().parents[3]


def start(tmp_path: Path, slapd, database_url: str, port: int, secret: str | None):
    config = tmp_path / "pacsflow.toml"
    config.write_text(
        f"""
[console]
port = {port}
cookie_secure = false

[ldap]
url = "{slapd.url}"
user_dn_template = "uid={{username}},{PEOPLE}"
group_search_base = ""

[rbac]
it_admin = ["{ROLE_GROUPS["it_admin"]}"]
"""
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PACSFLOW_DATABASE__URL": database_url,
        "PACSFLOW_NODE__STORAGE_DIR": str(tmp_path / "storage"),
    }
    env.pop("PACSFLOW_CONSOLE_SECRET", None)
    if secret:
        env["PACSFLOW_CONSOLE_SECRET"] = secret
    return subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "--config", str(config), "console"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_console_command_serves_logins_and_stops_on_sigint(
    tmp_path, running_slapd, clean_database_url
):
    port = free_port()
    process = start(tmp_path, running_slapd, clean_database_url, port, SECRET)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "console did not start"
            time.sleep(0.1)
        with httpx.Client(base_url=base) as client:
            answer = client.post("/login", data={"username": "itadmin", "password": "itpw"})
            assert answer.status_code == 303 and answer.headers["location"] == "/system"
            assert client.get("/api/system").status_code == 200
            assert client.get("/api/worklist").status_code == 403
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output


def test_console_command_refuses_to_start_without_the_secret(
    tmp_path, running_slapd, clean_database_url
):
    process = start(tmp_path, running_slapd, clean_database_url, free_port(), None)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "PACSFLOW_CONSOLE_SECRET" in output
