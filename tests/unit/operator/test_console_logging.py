"""The console of ``pacsflow`` commands: a PACS that is down is told once per attempt, by us."""

from __future__ import annotations

import logging
import socket
from contextlib import suppress

import pytest

from deployments.cli import NOISY_LOGGERS, ConnectFailuresReportedByCaller, configure_logging
from integrations.dicom.scu import DicomClient, Peer
from integrations.errors import PeerUnavailableError


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def console_logging():
    filtered = [logging.getLogger(name) for name in ("pynetdicom.transport", "pynetdicom.utils")]
    filters = [list(logger.filters) for logger in filtered]
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    configure_logging(verbose=False)
    yield
    for logger, kept in zip(filtered, filters, strict=True):
        logger.filters[:] = kept
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_a_refused_connect_gives_our_error_and_no_pynetdicom_error_lines(console_logging, caplog):
    peer = Peer("PACS", "127.0.0.1", closed_port(), "PACSFLOW", timeout_seconds=2, role="PACS")
    with caplog.at_level(logging.WARNING), pytest.raises(PeerUnavailableError) as refused:
        DicomClient(peer).echo()
    assert "refused the association" in str(refused.value)
    assert [r for r in caplog.records if r.name.startswith("pynetdicom")] == []


def test_other_pynetdicom_errors_still_reach_the_console():
    keep = ConnectFailuresReportedByCaller()
    record = logging.LogRecord(
        "pynetdicom.transport", logging.ERROR, __file__, 1, "Connection closed by peer", None, None
    )
    assert keep.filter(record)
    record.msg = "TCP Initialisation Error: [Errno 111] Connection refused"
    assert not keep.filter(record)


def test_a_failed_tls_handshake_gives_our_error_naming_it_and_no_pynetdicom_lines(
    console_logging, caplog, tmp_path
):
    import ssl
    import threading

    from integrations.tls import TlsFiles, client_context
    from tests.tls_certs import make_pki

    pki = make_pki(tmp_path / "pki")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pki.rogue_server.cert, pki.rogue_server.key)
    listener = socket.create_server(("127.0.0.1", 0))

    def answer_once() -> None:
        connection, _ = listener.accept()
        with connection, suppress(ssl.SSLError, OSError):
            server.wrap_socket(connection, server_side=True)

    for _ in range(2):  # the association, then the SCU's one look at why it failed
        threading.Thread(target=answer_once, daemon=True).start()
    tls = (client_context(TlsFiles(ca=str(pki.ca))), "localhost")
    peer = Peer(
        "PACS", "127.0.0.1", listener.getsockname()[1], "PACSFLOW", timeout_seconds=5, tls=tls
    )
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(PeerUnavailableError) as refused:
            DicomClient(peer).echo()
    finally:
        listener.close()
    assert "TLS: certificate not trusted" in str(refused.value)
    assert [r for r in caplog.records if r.name.startswith("pynetdicom")] == []


def test_info_lines_still_reach_the_console_after_a_flow_module_is_imported():
    """Prefect's logging set-up runs again, incrementally, when ``prefect.main`` is first
    imported (by any flow module), and put the root logger at WARNING: a worker's INFO lines
    after that ("waiting for studies", "Prefect API answers again") were lost. A fresh process,
    as ``pacsflow worker`` starts."""
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import logging\n"
        "from deployments.cli import configure_logging, quiet_prefect_console\n"
        "configure_logging(False)\n"
        "quiet_prefect_console()\n"
        "import flows.process_study\n"
        "logging.getLogger('pacsflow.worker').info('worker ready after the flow import')\n"
    )
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env={
            "PYTHONPATH": str(root),
            "PATH": "/usr/bin:/bin",
            "PREFECT_API_URL": "http://127.0.0.1:9/api",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "INFO    pacsflow.worker: worker ready after the flow import" in done.stderr
