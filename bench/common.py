"""Shared pieces of the benchmarks: timing statistics, a node process, the database (I/O)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from deployments.orthanc import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
SYSTEM_POSTGRES = os.environ.get(
    "PACSFLOW_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):.3f} s, p95 {percentile(values, 0.95):.3f} s, "
        f"min {min(values):.3f} s, max {max(values):.3f} s (n={len(values)})"
    )


@contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh database on the local PostgreSQL (or the embedded one), dropped afterwards."""
    name = f"pacsflow_bench_{os.getpid()}"
    try:
        with psycopg.connect(SYSTEM_POSTGRES, autocommit=True, connect_timeout=2) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        yield ""  # empty: the node starts its embedded server
        return
    try:
        yield SYSTEM_POSTGRES.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(SYSTEM_POSTGRES, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for_echo(
    port: int, called: str, process: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{called} exited while starting")
        done = subprocess.run(
            ["echoscu", "-aet", "BENCH", "-aec", called, "127.0.0.1", str(port)],
            env=DCMTK_ENV,
            capture_output=True,
        )
        if done.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"{called} did not answer C-ECHO on port {port}")


@contextmanager
def node_process(storage_dir: Path, database_url: str, **env: str) -> Iterator[int]:
    """``pacsflow node`` in a subprocess; yields its port."""
    port = free_port()
    variables = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PACSFLOW_CONFIG": "",
        "PACSFLOW_NODE__PORT": str(port),
        "PACSFLOW_NODE__AE_TITLE": "PACSFLOW",
        "PACSFLOW_NODE__STORAGE_DIR": str(storage_dir),
        "PACSFLOW_NODE__ALLOWED_CALLERS": '["BENCH"]',
        "PACSFLOW_DATABASE__URL": database_url,
        "PACSFLOW_STUDY__QUIET_SECONDS": "600",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "node"],
        env=variables,
        cwd=storage_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=open(storage_dir.parent / f"node-{port}.log", "wb"),  # noqa: SIM115
    )
    try:
        wait_for_echo(port, "PACSFLOW", process)
        yield port
    finally:
        process.terminate()
        process.wait(30)
