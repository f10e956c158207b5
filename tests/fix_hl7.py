"""The EMR's peers as real processes: an MLLP receiver and a FHIR server, plus pacsflow's own
EMR processes and a PostgreSQL that can be restarted (I/O).

- ``make_mllp_peer(start=True, validate=True)``: a ``tests.peers.mllp_peer`` process on a free
  port that records what it receives and answers AA/AE/AR/nothing/close on demand; ``stop()``
  closes the port for real and ``start()`` opens it again on the same port.
- ``make_fhir_server(auth=...)``: a ``tests.peers.fhir_server`` process that validates and
  stores what is posted, with bearer or SMART backend-services authentication and faults.
- ``pacsflow_process``: runs a pacsflow command (``hl7-listener``, ``emr-sender``) as a
  subprocess with a generated TOML configuration, stopped with SIGINT at the end.
- ``restartable_postgres``: a private PostgreSQL cluster (initdb as the ``postgres`` user) that
  a test may stop and start; the shared server on 5432 is never restarted by a test.

Every process is stopped at the end of its test, whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from deployments.orthanc import free_port
from integrations.db.schema import migrate

ROOT = Path(__file__).resolve().parent.parent


def _environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("PACSFLOW_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _write_json(path: Path, data: Any) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data))
    os.replace(temporary, path)


@dataclass
class PeerProcess:
    """A test peer process on a fixed port, restartable."""

    module: str
    port: int
    folder: Path
    options: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.process is None, "already running"
        (self.folder / "ready").unlink(missing_ok=True)
        log = open(self.folder / "process.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                self.module,
                "--port",
                str(self.port),
                "--dir",
                str(self.folder),
                *self.options,
            ],
            cwd=ROOT,
            env=_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until(
            lambda: (
                ((self.folder / "ready").exists() and _port_open(self.port))
                or self.process.poll() is not None
            ),
            20,
            f"{self.module} to listen on {self.port}",
        )
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.module} exited: {(self.folder / 'process.log').read_text()[-2000:]}"
            )

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
        wait_until(lambda: not _port_open(self.port), 10, f"port {self.port} to close")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class MllpPeer(PeerProcess):
    """The EMR's MLLP receiver."""

    def answers(
        self,
        default: str = "AA",
        queue: list[str] | None = None,
        by_control_id: dict[str, list[str]] | None = None,
        delay_seconds: float = 0.0,
    ) -> None:
        _write_json(
            self.folder / "answers.json",
            {
                "default": default,
                "queue": list(queue or []),
                "by_control_id": by_control_id or {},
                "delay_seconds": delay_seconds,
            },
        )

    def received(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.folder / "received.jsonl")

    def handshakes(self) -> list[str]:
        """Each TLS handshake's outcome ("ok TLSv1.3", "refused: ...") when run with TLS."""
        return [item["outcome"] for item in _read_jsonl(self.folder / "handshakes.jsonl")]

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        return wait_until(
            lambda: (found := self.received()) and len(found) >= count and found,
            timeout,
            f"{count} messages at the MLLP peer",
        )


class FhirServer(PeerProcess):
    """The FHIR R4 server."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def faults(self, queue: list[Any], token_queue: tuple[Any, ...] = ()) -> None:
        _write_json(self.folder / "faults.json", {"queue": queue, "token_queue": list(token_queue)})

    def resources(self, resource_type: str | None = None) -> list[dict[str, Any]]:
        found = _read_jsonl(self.folder / "resources.jsonl")
        return [item for item in found if resource_type in (None, item["resourceType"])]

    def requests(self) -> list[dict[str, Any]]:
        return _read_jsonl(self.folder / "requests.jsonl")


@pytest.fixture
def make_mllp_peer(tmp_path: Path) -> Iterator[Callable[..., MllpPeer]]:
    peers: list[MllpPeer] = []

    def make(
        *, start: bool = True, validate: bool = True, tls: dict[str, str] | None = None
    ) -> MllpPeer:
        """``tls``: ``{"cert": ..., "key": ..., "ca": ...}`` for MLLP over TLS only (with
        ``ca``, client certificates are required and checked against it)."""
        folder = tmp_path / f"mllp-peer-{len(peers)}"
        folder.mkdir()
        options = ["--validate"] if validate else []
        for name, value in (tls or {}).items():
            options += [f"--tls-{name}", value]
        peer = MllpPeer("tests.peers.mllp_peer", free_port(), folder, options)
        peers.append(peer)
        if start:
            peer.start()
        return peer

    yield make
    for peer in peers:
        peer.stop()


@pytest.fixture
def make_fhir_server(tmp_path: Path) -> Iterator[Callable[..., FhirServer]]:
    servers: list[FhirServer] = []

    def make(*, auth: str = "none", token: str = "", client_id: str = "", public_key: Path | None = None,
             token_lifetime: int = 300, clock_offset: float = 0.0) -> FhirServer:  # fmt: skip
        folder = tmp_path / f"fhir-server-{len(servers)}"
        folder.mkdir()
        options = ["--auth", auth, "--token-lifetime", str(token_lifetime)]
        if token:
            options += ["--token", token]
        if client_id:
            options += ["--client-id", client_id]
        if public_key:
            options += ["--public-key", str(public_key)]
        if clock_offset:
            options += ["--clock-offset", str(clock_offset)]
        server = FhirServer("tests.peers.fhir_server", free_port(), folder, options)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop()


# -- pacsflow's own processes -------------------------------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(value)


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    """A pacsflow TOML file from ``{section: {key: value}}``."""
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in values.items())
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@dataclass
class PacsflowProcess:
    """A running pacsflow command."""

    args: list[str]
    config: Path
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> PacsflowProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "--config", str(self.config), *self.args],
            cwd=ROOT,
            env=_environment(self.env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL: a crash, nothing cleaned up."""
        self.stop(signal.SIGKILL)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def pacsflow_process(tmp_path: Path) -> Iterator[Callable[..., PacsflowProcess]]:
    started: list[PacsflowProcess] = []

    def run(
        args: list[str], sections: dict[str, dict[str, Any]], env: dict[str, str] | None = None
    ) -> PacsflowProcess:
        index = len(started)
        config = write_config(tmp_path / f"pacsflow-{index}.toml", sections)
        process = PacsflowProcess(args, config, tmp_path / f"pacsflow-{index}.log", env or {})
        started.append(process)
        return process.start()

    yield run
    for process in started:
        process.stop()


# -- a PostgreSQL a test may restart ------------------------------------------------------------

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass
class RestartablePostgres:
    datadir: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                str(POSTGRES_BIN / "pg_ctl"),
                "-D",
                str(self.datadir),
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        self._ctl(
            "-l", str(self.datadir / "server.log"), "-w",
            "-o", f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@pytest.fixture
def restartable_postgres() -> Iterator[RestartablePostgres]:
    if (
        not (POSTGRES_BIN / "initdb").exists()
        or shutil.which("runuser") is None
        or os.geteuid() != 0
    ):
        pytest.skip("needs PostgreSQL 15 binaries and root (initdb runs as the postgres user)")
    folder = Path(tempfile.mkdtemp(prefix="pacsflow-pg-"))
    folder.chmod(0o755)
    datadir = folder / "data"
    datadir.mkdir()
    shutil.chown(datadir, "postgres")
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(POSTGRES_BIN / "initdb"),
            "-D",
            str(datadir),
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server = RestartablePostgres(datadir, free_port())
    server.start()
    with psycopg.connect(server.url, autocommit=True) as conn:
        migrate(conn)
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            server.stop()
        shutil.rmtree(folder, ignore_errors=True)
