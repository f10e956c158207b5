"""The audit record repository as a real process: a recording syslog collector (I/O).

- ``make_syslog_collector(transport="tcp")``: a ``tests.peers.syslog_collector`` process on a
  free port (tcp with octet counting, tls, or udp) that records every message it receives;
  ``stop()`` closes the port for real and ``start()`` opens it again on the same port.
- ``syslog_tls``: a private CA and a server certificate for 127.0.0.1 / localhost, and a client
  certificate signed by the same CA (written once per session).

Every collector is stopped at the end of its test.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deployments.orthanc import free_port
from tests.fix_hl7 import ROOT, _environment, _port_open, wait_until


@dataclass
class SyslogCollector:
    transport: str
    port: int
    folder: Path
    options: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> SyslogCollector:
        assert self.process is None, "already running"
        (self.folder / "ready").unlink(missing_ok=True)
        log = open(self.folder / "process.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tests.peers.syslog_collector",
                "--port", str(self.port), "--dir", str(self.folder),
                "--transport", self.transport, *self.options,
            ],
            cwd=ROOT, env=_environment(), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()

        def listening() -> bool:
            if self.process is not None and self.process.poll() is not None:
                return True
            ready = (self.folder / "ready").exists()
            return ready and (self.transport == "udp" or _port_open(self.port))

        wait_until(listening, 20, f"the syslog collector to listen on {self.port}")
        if self.process.poll() is not None:
            raise RuntimeError(f"collector exited: {(self.folder / 'process.log').read_text()}")
        return self

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
        if self.transport != "udp":
            wait_until(lambda: not _port_open(self.port), 10, f"port {self.port} to close")

    def received(self) -> list[dict[str, Any]]:
        path = self.folder / "received.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_for(self, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        return wait_until(
            lambda: (lambda got: got if len(got) >= count else None)(self.received()),
            timeout,
            f"{count} syslog messages (have {len(self.received())})",
        )

    def settle(self, seconds: float = 0.5) -> list[dict[str, Any]]:
        """What arrived once nothing more came for ``seconds``."""
        last = -1
        while True:
            got = self.received()
            if len(got) == last:
                return got
            last = len(got)
            time.sleep(seconds)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _write_certificates(folder: Path) -> TlsFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    def key_pem(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("pacsflow test audit CA"))
        .issuer_name(name("pacsflow test audit CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common: str, server: bool) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(common))
            .issuer_name(ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
                    if server
                    else [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                False,
            )
        cert = builder.sign(ca_key, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), key_pem(key)

    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    server_cert, server_key = leaf("127.0.0.1", True)
    client_cert, client_key = leaf("pacsflow", False)
    files.server_cert.write_bytes(server_cert)
    files.server_key.write_bytes(server_key)
    files.client_cert.write_bytes(client_cert)
    files.client_key.write_bytes(client_key)
    for key in (files.server_key, files.client_key):
        os.chmod(key, 0o600)
    return files


@pytest.fixture(scope="session")
def syslog_tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return _write_certificates(tmp_path_factory.mktemp("syslog-tls"))


@pytest.fixture
def make_syslog_collector(tmp_path: Path) -> Iterator[Callable[..., SyslogCollector]]:
    started: list[SyslogCollector] = []

    def make(
        transport: str = "tcp", *, tls: TlsFiles | None = None, require_client_cert: bool = False
    ) -> SyslogCollector:
        folder = tmp_path / f"syslog-{len(started)}"
        folder.mkdir()
        options: list[str] = []
        if transport == "tls":
            assert tls is not None, "a tls collector needs the syslog_tls files"
            options = ["--cert", str(tls.server_cert), "--key", str(tls.server_key)]
            if require_client_cert:
                options += ["--client-ca", str(tls.ca)]
        collector = SyslogCollector(transport, free_port(), folder, options)
        started.append(collector)
        return collector.start()

    yield make
    for collector in started:
        collector.stop()
