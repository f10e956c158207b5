"""A real Prefect server for the test session, on a free port with its own home (I/O).

It is started with the environment ``pacsflow serve`` gives the server it starts, so its UI
asks its own port. The test process talks to it through temporary settings; subprocesses started by tests get
``PREFECT_API_URL`` from :func:`prefect_env`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from deployments.orthanc import free_port
from deployments.prefect_urls import server_environment
from integrations.settings import load_settings


@contextmanager
def prefect_server(home: Path) -> Iterator[str]:
    """A Prefect server on a free port with ``home`` as its PREFECT_HOME, started with the
    environment ``pacsflow serve`` gives the server it starts; yields its API URL, with this
    process's Prefect settings pointing at it."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    # The environment `pacsflow serve` gives the server it starts: its UI asks this port.
    served = load_settings(
        None, search=False, prefect={"server_host": "127.0.0.1", "server_port": port}
    )
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **server_environment(served),
    }
    with open(home / "server.log", "wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "prefect", "server", "start"),
                *("--host", "127.0.0.1", "--port", str(port), "--analytics-off"),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Prefect server did not start; see {home / 'server.log'}")
                time.sleep(0.2)
            with temporary_settings(updates={PREFECT_API_URL: url, PREFECT_HOME: Path(home)}):
                os.environ["PREFECT_API_URL"] = url
                try:
                    yield url
                finally:
                    os.environ.pop("PREFECT_API_URL", None)
        finally:
            process.send_signal(2)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def prefect_api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as url:
        yield url


def prefect_env(api_url: str) -> dict[str, str]:
    return {"PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def flow_runs(api_url: str, flow_name: str) -> list[dict]:
    """Flow runs of a flow, newest first, straight from the server's REST API."""
    response = httpx.post(
        f"{api_url}/flow_runs/filter",
        json={"flows": {"name": {"any_": [flow_name]}}, "sort": "START_TIME_DESC", "limit": 200},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()
