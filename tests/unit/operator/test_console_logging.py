"""The console of ``pacsflow`` commands: a PACS that is down is told once per attempt, by us."""

from __future__ import annotations

import logging
import socket

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
    transport = logging.getLogger("pynetdicom.transport")
    filters = list(transport.filters)
    levels = {name: logging.getLogger(name).level for name in NOISY_LOGGERS}
    configure_logging(verbose=False)
    yield
    transport.filters[:] = filters
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
