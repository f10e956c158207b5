"""DICOM and MLLP over TLS against real peers on loopback: dcmtk's TLS tools, Orthanc's DICOM
TLS both ways, the project's MLLP peer wrapped in TLS, and Python ``ssl`` clients for what no
good peer sends (TLS 1.0/1.1, no certificate, a certificate from an unknown CA, plaintext).

Every refusal on a TLS port must come out as exactly one WARNING line, one ``tls_refused``
node event, one audit record and one count, and never as an answer in plaintext. A silent
client on the TLS port must not hold back anybody else (pynetdicom would do the handshake in
its accept loop), and the negotiation deadline and per-source limits hold there too.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from psycopg.rows import dict_row
from pydicom import dcmread
from pydicom.dataset import Dataset

from deployments.commands.hl7_listener import refusal_recorder
from deployments.orthanc import (
    Modality,
    OrthancClient,
    OrthancConfig,
    OrthancProcess,
    OrthancTls,
    free_port,
)
from integrations.audit.message import check_audit_xml
from integrations.db.connection import Database, open_database
from integrations.db.outbox import OutboxStore
from integrations.db.patients import PatientStore
from integrations.dicom.scu import DicomClient, pacs_peer
from integrations.emr.identifiers import MrnRules
from integrations.errors import PeerUnavailableError
from integrations.hl7.listener import AdtListener
from integrations.hl7.mllp import MllpClient
from integrations.hl7.sender import Hl7Sender
from integrations.tls import TlsFiles, client_context
from tests.dicom_samples import study_files
from tests.emr_samples import adt
from tests.fix_dcmtk import dcmtk
from tests.fix_hl7 import wait_until
from tests.integration.emr.helpers import AdtSender, fast_emr, msa
from tests.site import RunningNode, running_node
from tests.tls_certs import Identity, Pki, make_pki

NODE_AE_TITLE = "PACSFLOW"
CALLER = "MODALITY"
PACS_AE_TITLE = "TLSPACS"
NEGOTIATION_TIMEOUT = 3.0
REFUSED_LINE = "refused on the TLS port"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def node_settings(settings_factory, pki: Pki, **node: object):
    return settings_factory(
        node={
            "ae_title": NODE_AE_TITLE,
            "port": free_port(),
            "tls_port": free_port(),
            "tls_cert": str(pki.node.cert),
            "tls_key": str(pki.node.key),
            "tls_ca": str(pki.ca),
            "allowed_callers": [CALLER, PACS_AE_TITLE],
            "negotiation_timeout_seconds": NEGOTIATION_TIMEOUT,
            **node,
        }
    )


def tls_port(node: RunningNode) -> int:
    address = node.node.tls_address
    assert address is not None
    return address[1]


def rows(database: Database, sql: str, *params: object) -> list[dict]:
    with database.connection() as conn:
        cursor = conn.cursor(row_factory=dict_row)
        return cursor.execute(sql, params).fetchall()  # type: ignore[arg-type]


def node_events(database: Database, kind: str) -> list[dict]:
    return rows(database, "SELECT * FROM node_events WHERE kind = %s ORDER BY id", kind)


def audit_records(database: Database, kind: str) -> list[dict]:
    return rows(database, "SELECT * FROM audit_records WHERE kind = %s ORDER BY id", kind)


def echoscu_tls(
    port: int, identity: Identity | None, trusted: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """dcmtk's echoscu over TLS (its default profile: non-downgrading BCP 195)."""
    credentials = ["+tls", str(identity.key), str(identity.cert)] if identity else ["+tla"]
    return dcmtk(
        "echoscu",
        "-aet",
        CALLER,
        "-aec",
        NODE_AE_TITLE,
        *credentials,
        "+cf",
        str(trusted),
        *extra,
        "127.0.0.1",
        str(port),
        timeout=60,
    )


def python_tls_client(
    port: int,
    *,
    trusted: Path,
    identity: Identity | None = None,
    maximum: ssl.TLSVersion | None = None,
) -> str:
    """Connect and try one exchange; what happened, in the client's words."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=str(trusted))
    if maximum is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = maximum
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # OpenSSL 3 disables TLS < 1.2 at level 1+
    if identity is not None:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            # TLS 1.3: the client finishes before the server has checked its certificate;
            # the server's verdict comes with the first read.
            tls.sendall(b"\x0b")
            answer = tls.recv(1)
            return "accepted" if answer else "closed"
    except (ssl.SSLError, OSError) as error:
        return f"refused: {error}"


def plaintext_answer(port: int, first_bytes: bytes) -> bytes:
    """Send plaintext to a TLS port; every byte that came back before it closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(first_bytes)
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except ConnectionResetError:
            pass  # closed with our bytes unread: a reset instead of an orderly close
        return received


# A plaintext A-ASSOCIATE-RQ header and the start of its body (PS3.8 9.3.2).
PLAINTEXT_ASSOCIATE_RQ = struct.pack(">BBLHH", 0x01, 0x00, 68, 0x0001, 0x0000) + b"PACSFLOW" * 2


def assert_refused_once(
    database: Database, caplog: pytest.LogCaptureFixture, reason: str, counted: Callable[[], int]
) -> dict:
    """One node event, one audit record, one count and one WARNING line, all naming ``reason``."""
    wait_until(
        lambda: (
            node_events(database, "tls_refused") and audit_records(database, "connection_refused")
        ),
        30,
        "the refusal recorded and audited",
    )
    events = node_events(database, "tls_refused")
    assert len(events) == 1, events
    assert reason in events[0]["detail"], events[0]["detail"]
    assert events[0]["peer_host"] == "127.0.0.1"
    audits = audit_records(database, "connection_refused")
    assert len(audits) == 1
    assert (audits[0]["event_id"], audits[0]["event_type"], audits[0]["outcome"]) == (
        "110113",
        "110126",
        4,
    )
    check_audit_xml(audits[0]["message"])
    assert reason in audits[0]["message"]
    assert counted() == 1
    lines = [r for r in caplog.records if REFUSED_LINE in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and reason in lines[0].getMessage()
    return events[0]


# -- DICOM: the node's TLS port -------------------------------------------------------------


@pytest.mark.slow  # waits out a generous negotiation deadline
def test_dcmtk_echo_and_store_over_tls_are_not_held_back_by_silent_clients(
    settings_factory, pki, tmp_path, dcmtk_tools
):
    settings = node_settings(settings_factory, pki, negotiation_timeout_seconds=15.0)
    with running_node(settings, close_studies=False) as node:
        port = tls_port(node)
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        echo = echoscu_tls(port, pki.modality, pki.ca)
        assert echo.returncode == 0, echo.stderr
        files = study_files(tmp_path / "study", "tls-store", count=3)
        store = dcmtk(
            "storescu",
            "-aet",
            CALLER,
            "-aec",
            NODE_AE_TITLE,
            "+tls",
            str(pki.modality.key),
            str(pki.modality.cert),
            "+cf",
            str(pki.ca),
            "127.0.0.1",
            str(port),
            *map(str, files),
        )
        assert store.returncode == 0, store.stderr
        # Both went through while every silent client still held its unfinished handshake:
        # nothing waited for them.
        for sock in silent:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        study = str(dcmread(files[0]).StudyInstanceUID)
        assert len(node.store.instances(study)) == 3
        # The plain port is untouched by TLS.
        plain = dcmtk("echoscu", "-aet", CALLER, "-aec", NODE_AE_TITLE, "127.0.0.1", str(node.port))
        assert plain.returncode == 0, plain.stderr
        # At the negotiation deadline each silent client is closed, and recorded once.
        for sock in silent:
            sock.setblocking(True)
            sock.settimeout(60)
            assert sock.recv(1) == b""
            sock.close()
        # As on the plain port: a negotiation timeout, not a TLS failure.
        events = wait_until(
            lambda: len(found := node_events(node.database, "connection_refused")) >= 3 and found,
            30,
            "three silent clients recorded",
        )
        assert len(events) == 3
        assert all(
            "closed on the TLS port: sent nothing within 15 s" in event["detail"]
            for event in events
        )
        assert node_events(node.database, "tls_refused") == []
        assert node.node.counters.tls_refused == 0


@pytest.mark.parametrize(
    ("attempt", "reason"),
    [
        pytest.param(
            lambda port, pki: (
                dcmtk(
                    "echoscu", "-aet", CALLER, "-aec", NODE_AE_TITLE, "127.0.0.1", str(port)
                ).returncode
                != 0
            ),
            "plaintext DICOM A-ASSOCIATE-RQ",
            id="plaintext-dcmtk",
        ),
        pytest.param(
            lambda port, pki: python_tls_client(
                port, trusted=pki.ca, identity=pki.modality, maximum=ssl.TLSVersion.TLSv1
            ).startswith("refused"),
            "TLS older than 1.2",
            id="tls-1.0",
        ),
        pytest.param(
            lambda port, pki: python_tls_client(
                port, trusted=pki.ca, identity=pki.modality, maximum=ssl.TLSVersion.TLSv1_1
            ).startswith("refused"),
            "TLS older than 1.2",
            id="tls-1.1",
        ),
        pytest.param(
            lambda port, pki: echoscu_tls(port, pki.rogue_client, pki.ca).returncode != 0,
            "certificate not trusted",
            id="client-certificate-from-an-unknown-ca",
        ),
        pytest.param(
            lambda port, pki: python_tls_client(port, trusted=pki.ca) != "accepted",
            "no client certificate",
            id="no-client-certificate",
        ),
        pytest.param(
            lambda port, pki: echoscu_tls(port, pki.modality, pki.rogue_ca).returncode != 0,
            "does not trust our certificate",
            id="client-does-not-trust-the-node",
        ),
        pytest.param(
            lambda port, pki: echoscu_tls(port, pki.modality, pki.ca, "+pa").returncode != 0,
            "no cipher suite in common",
            id="retired-aes-profile-without-forward-secrecy",
        ),
    ],
)
def test_each_refused_tls_connection_is_logged_recorded_audited_and_counted_once(
    settings_factory, pki, caplog, dcmtk_tools, attempt, reason
):
    caplog.set_level(logging.WARNING, logger="integrations.dicom.guard")
    settings = node_settings(settings_factory, pki)
    with running_node(settings, close_studies=False) as node:
        port = tls_port(node)
        assert attempt(port, pki), "the client was let in"
        assert_refused_once(node.database, caplog, reason, lambda: node.node.counters.tls_refused)
        assert node_events(node.database, "association_rejected") == []
        # The node is unharmed: a good client still gets in.
        echo = echoscu_tls(port, pki.modality, pki.ca)
        assert echo.returncode == 0, echo.stderr


def test_plaintext_on_the_tls_port_gets_not_one_byte_back(settings_factory, pki):
    settings = node_settings(settings_factory, pki)
    with running_node(settings, close_studies=False) as node:
        assert plaintext_answer(tls_port(node), PLAINTEXT_ASSOCIATE_RQ) == b""
        events = wait_until(lambda: node_events(node.database, "tls_refused"), 30, "recorded")
        assert "plaintext DICOM A-ASSOCIATE-RQ" in events[0]["detail"]


def test_a_dripped_client_hello_is_closed_at_the_negotiation_deadline(settings_factory, pki):
    settings = node_settings(settings_factory, pki)
    with running_node(settings, close_studies=False) as node:
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", tls_port(node)), timeout=1) as sock:
            # A TLS record header announcing a long ClientHello, then one byte at a time:
            # each byte would restart a socket timeout, the deadline does not restart.
            sock.sendall(bytes([0x16, 0x03, 0x01, 0x40, 0x00, 0x01]))
            closed = False
            while time.monotonic() - started < 10 * NEGOTIATION_TIMEOUT:
                try:
                    sock.sendall(b"\x00")
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    continue
                except OSError:
                    closed = True
                    break
        assert closed, "the node kept a dripping handshake open"
        events = wait_until(
            lambda: node_events(node.database, "connection_refused"), 30, "recorded"
        )
        assert len(events) == 1
        assert f"no TLS handshake within {NEGOTIATION_TIMEOUT:g} s" in events[0]["detail"]


def test_a_tls_client_that_never_requests_an_association_is_closed_at_the_deadline(
    settings_factory, pki
):
    settings = node_settings(settings_factory, pki)
    with running_node(settings, close_studies=False) as node:
        context = client_context(
            TlsFiles(str(pki.modality.cert), str(pki.modality.key), str(pki.ca))
        )
        with (
            socket.create_connection(("127.0.0.1", tls_port(node)), timeout=60) as raw,
            context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.recv(1) == b""  # the handshake went through; then nothing was asked
        events = wait_until(
            lambda: node_events(node.database, "connection_refused"), 30, "recorded"
        )
        assert len(events) == 1
        assert f"no association negotiated within {NEGOTIATION_TIMEOUT:g} s" in events[0]["detail"]
        assert node_events(node.database, "tls_refused") == []


def test_the_per_source_limit_holds_on_the_tls_port(settings_factory, pki, dcmtk_tools):
    settings = node_settings(
        settings_factory, pki, max_connections_per_source=2, negotiation_timeout_seconds=30.0
    )
    with running_node(settings, close_studies=False) as node:
        port = tls_port(node)
        oldest, newer = (socket.create_connection(("127.0.0.1", port)) for _ in range(2))
        wait_until(lambda: node.node.guard.limiter.counts() == (2, 2), 30, "both admitted")
        # The source is full of connections that never started a handshake: a real sender
        # takes the oldest one's place instead of being locked out.
        echo = echoscu_tls(port, pki.modality, pki.ca)
        assert echo.returncode == 0, echo.stderr
        oldest.settimeout(30)
        assert oldest.recv(1) == b""
        events = node_events(node.database, "connection_refused")
        assert len(events) == 1
        assert "gave its place" in events[0]["detail"]
        assert node_events(node.database, "tls_refused") == []
        newer.close()
        oldest.close()


# -- DICOM: Orthanc's DICOM TLS, both ways --------------------------------------------------


@pytest.fixture
def tls_orthanc(pki, tmp_path):
    """Orthanc with DICOM TLS only (client certificates required), knowing the node's TLS
    port; started per test by the test (it needs the node's port first)."""
    started: list[OrthancProcess] = []

    def start(node_tls_port: int) -> tuple[OrthancClient, int]:
        config = OrthancConfig(
            storage_dir=tmp_path / "orthanc",
            ae_title=PACS_AE_TITLE,
            dicom_port=free_port(),
            http_port=free_port(),
            modalities=[
                Modality("pacsflow", NODE_AE_TITLE, "127.0.0.1", node_tls_port, use_tls=True)
            ],
            tls=OrthancTls(pki.pacs.cert, pki.pacs.key, pki.ca, remote_certificate_required=True),
        )
        process = OrthancProcess(config)
        process.start()
        started.append(process)
        return OrthancClient(process.url), config.dicom_port

    yield start
    for process in started:
        process.stop()


def pacs_tls(port: int, pki: Pki, trusted: Path) -> dict[str, object]:
    return {
        "ae_title": PACS_AE_TITLE,
        "host": "127.0.0.1",
        "port": port,
        "timeout_seconds": 20.0,
        "tls": True,
        "tls_ca": str(trusted),
        "tls_cert": str(pki.node.cert),
        "tls_key": str(pki.node.key),
    }


def test_node_and_orthanc_talk_dicom_tls_both_ways(settings_factory, pki, tmp_path, tls_orthanc):
    base = node_settings(settings_factory, pki)
    orthanc, orthanc_port = tls_orthanc(base.node.tls_port)
    settings = base.model_copy(
        update={"pacs": base.pacs.model_validate(pacs_tls(orthanc_port, pki, pki.ca))}
    )
    with running_node(settings, close_studies=False) as node:
        pacs = DicomClient(pacs_peer(settings))
        # Node -> Orthanc over TLS: C-ECHO and C-STORE, as the results sender sends.
        pacs.echo()
        ours = study_files(tmp_path / "ours", "tls-results", count=2)
        assert pacs.store_files(ours) == [0, 0]
        assert orthanc.find_study(str(dcmread(ours[0]).StudyInstanceUID)) is not None
        # Orthanc -> node over TLS: C-ECHO and C-STORE from its REST API.
        assert orthanc.echo("pacsflow")
        theirs = study_files(tmp_path / "theirs", "tls-from-pacs", count=2)
        for path in theirs:
            orthanc.upload(path.read_bytes())
        study = str(dcmread(theirs[0]).StudyInstanceUID)
        answer = orthanc.send_study("pacsflow", [study])
        assert answer.get("FailedInstancesCount", 0) == 0, answer
        assert len(node.store.instances(study)) == 2
        # Priors: C-FIND and C-MOVE over TLS, Orthanc's sub-operations back over TLS too.
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = str(dcmread(ours[0]).StudyInstanceUID)
        assert len(pacs.find(query)) == 1
        moved = pacs.move(query, NODE_AE_TITLE)
        assert (moved.completed, moved.failed) == (2, 0)
        assert len(node.store.instances(query.StudyInstanceUID)) == 2
        assert node_events(node.database, "tls_refused") == []


def test_the_results_sender_delivers_the_sr_and_overlays_to_orthanc_over_tls(
    settings_factory, pki, tmp_path, tls_orthanc
):
    from integrations.dicom.result_sender import ResultsSender
    from tests.integration.results.outbox_helpers import add_study, built_results, enqueue

    base = node_settings(settings_factory, pki)
    orthanc, orthanc_port = tls_orthanc(base.node.tls_port)
    settings = base.model_copy(
        update={"pacs": base.pacs.model_validate(pacs_tls(orthanc_port, pki, pki.ca))}
    )
    database = open_database(settings)
    try:
        image, reports, overlays = built_results(tmp_path)
        study = add_study(database, image)
        enqueue(database, study, reports, overlays)
        sender = ResultsSender(database, settings)
        try:
            assert sender.drain() == len(reports) + len(overlays)
        finally:
            sender.close()
        stored = {item["MainDicomTags"]["SOPInstanceUID"] for item in orthanc.instances_of(study)}
        sent = {item.sop_instance_uid for item in reports + overlays}
        assert sent and sent <= stored
    finally:
        database.close()


def test_a_pacs_whose_certificate_the_node_does_not_trust_is_never_spoken_to(
    settings_factory, pki, tmp_path, tls_orthanc
):
    base = node_settings(settings_factory, pki)
    orthanc, orthanc_port = tls_orthanc(base.node.tls_port)
    settings = base.model_copy(
        update={"pacs": base.pacs.model_validate(pacs_tls(orthanc_port, pki, pki.rogue_ca))}
    )
    files = study_files(tmp_path / "ours", "tls-untrusted-pacs", count=1)
    with pytest.raises(PeerUnavailableError) as raised:
        DicomClient(pacs_peer(settings)).store_files(files)
    assert "TLS" in str(raised.value) and "certificate not trusted" in str(raised.value)
    assert orthanc.find_study(str(dcmread(files[0]).StudyInstanceUID)) is None


# -- MLLP: the HL7 listener's TLS port and the EMR sender -----------------------------------


@contextmanager
def running_tls_listener(settings_factory, pki: Pki, **hl7: object) -> Iterator[tuple]:
    settings = settings_factory(
        hl7={
            "tls_port": free_port(),
            "tls_cert": str(pki.node.cert),
            "tls_key": str(pki.node.key),
            "tls_ca": str(pki.ca),
            "first_frame_timeout_seconds": NEGOTIATION_TIMEOUT,
            **hl7,
        }
    )
    database = open_database(settings)
    listener = AdtListener(
        settings.hl7, PatientStore(database, MrnRules.from_settings(settings.mrn))
    )
    server = listener.server(tls=True, on_refused=refusal_recorder(database, settings, tls=True))
    server.start()
    try:
        yield server, database
    finally:
        server.stop()
        database.close()


@pytest.fixture
def tls_listener(settings_factory, pki):
    with running_tls_listener(settings_factory, pki) as running:
        yield running


def modality_mllp_client(port: int, pki: Pki) -> MllpClient:
    files = TlsFiles(str(pki.modality.cert), str(pki.modality.key), str(pki.ca))
    return MllpClient("127.0.0.1", port, tls=(client_context(files), "localhost"))


@pytest.mark.slow  # waits out a generous negotiation deadline
def test_silent_sockets_on_the_mllp_tls_port_neither_lock_out_the_adt_feed_nor_stay(
    settings_factory, pki
):
    with running_tls_listener(
        settings_factory, pki, max_connections_per_source=2, first_frame_timeout_seconds=20.0
    ) as (server, database):
        port = server.address[1]
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
        client = modality_mllp_client(port, pki)
        try:
            # The source is full of sockets that never started a handshake: the ADT sender
            # takes the oldest one's place, within the same limit.
            assert msa(client.send(adt("A01", "TLS-FULL-1").encode()).decode())[0] == "AA"
        finally:
            client.close()
        silent[0].settimeout(60)
        assert silent[0].recv(1) == b""  # gave its place
        silent[1].settimeout(60)
        assert silent[1].recv(1) == b""  # closed at the first-frame deadline
        for sock in silent:
            sock.close()
        assert server.tls_refused == 0
        assert node_events(database, "tls_refused") == []


def test_adt_over_tls_is_acknowledged(tls_listener, pki):
    server, _database = tls_listener
    client = modality_mllp_client(server.address[1], pki)
    try:
        code, control_id, _ = msa(client.send(adt("A01", "TLS-ADT-1").encode()).decode())
    finally:
        client.close()
    assert (code, control_id) == ("AA", "TLS-ADT-1")
    assert server.tls_refused == 0


def _plaintext_adt(port: int) -> bool:
    sender = AdtSender(port)
    try:
        sender.send(adt("A01", "PLAIN-1"))
    except (ConnectionError, OSError):
        return True
    finally:
        sender.close()
    return False


@pytest.mark.parametrize(
    ("attempt", "reason"),
    [
        pytest.param(_plaintext_adt, "plaintext MLLP frame", id="plaintext"),
        pytest.param(
            lambda port, pki: python_tls_client(
                port, trusted=pki.ca, identity=pki.modality, maximum=ssl.TLSVersion.TLSv1_1
            ).startswith("refused"),
            "TLS older than 1.2",
            id="tls-1.1",
        ),
        pytest.param(
            lambda port, pki: (
                python_tls_client(port, trusted=pki.ca, identity=pki.rogue_client) != "accepted"
            ),
            "certificate not trusted",
            id="client-certificate-from-an-unknown-ca",
        ),
    ],
)
def test_each_refused_mllp_tls_connection_is_logged_recorded_audited_and_counted_once(
    tls_listener, pki, caplog, attempt, reason
):
    caplog.set_level(logging.WARNING, logger="integrations.hl7.mllp")
    server, database = tls_listener
    port = server.address[1]
    let_in = attempt(port) if attempt is _plaintext_adt else attempt(port, pki)
    assert let_in, "the client was let in"
    assert_refused_once(database, caplog, reason, lambda: server.tls_refused)


def test_the_hl7_listener_command_serves_tls_beside_plain_and_records_refusals(
    settings_factory, pacsflow_process, pki
):
    settings = settings_factory()
    plain, secure = free_port(), free_port()
    process = pacsflow_process(
        ["hl7-listener"],
        {
            "database": {"url": settings.database.url},
            "hl7": {
                "port": plain,
                "tls_port": secure,
                "tls_cert": str(pki.node.cert),
                "tls_key": str(pki.node.key),
                "tls_ca": str(pki.ca),
            },
        },
    )
    wait_until(lambda: f"TLS on {secure}" in process.log, 60, "the listener to start")
    client = modality_mllp_client(secure, pki)
    try:
        assert msa(client.send(adt("A01", "CMD-TLS-1").encode()).decode())[:2] == (
            "AA",
            "CMD-TLS-1",
        )
    finally:
        client.close()
    assert msa(AdtSender(plain).send(adt("A01", "CMD-PLAIN-1")))[:2] == ("AA", "CMD-PLAIN-1")
    assert _plaintext_adt(secure)
    database = open_database(settings)
    try:
        wait_until(
            lambda: (
                node_events(database, "tls_refused")
                and audit_records(database, "connection_refused")
            ),
            30,
            "the refusal recorded and audited",
        )
        [event] = node_events(database, "tls_refused")
        assert "plaintext MLLP frame" in event["detail"]
        assert len(audit_records(database, "connection_refused")) == 1
    finally:
        database.close()
    process.stop()
    assert process.log.count(REFUSED_LINE) == 1


def test_the_emr_sender_speaks_mllp_over_tls_and_never_to_an_untrusted_receiver(
    settings_factory, make_mllp_peer, pki
):
    peer = make_mllp_peer(
        tls={"cert": str(pki.pacs.cert), "key": str(pki.pacs.key), "ca": str(pki.ca)}
    )
    client_tls = {"tls": True, "tls_cert": str(pki.node.cert), "tls_key": str(pki.node.key)}
    trusted = settings_factory(
        emr=fast_emr(peer.port, host="localhost", tls_ca=str(pki.ca), **client_tls)
    )
    database = open_database(trusted)
    outbox = OutboxStore(database)
    payload = (
        "MSH|^~\\&|PACSFLOW|PACSFLOW|EMR|HOSPITAL|20260301||ORU^R01^ORU_R01|TLS-ORU-1|P|2.5.1\r"
        "PID|1||A^^^HOSP^MR||DOE^A\r"
    )
    assert outbox.enqueue(
        message_control_id="TLS-ORU-1",
        message_type="ORU^R01",
        payload=payload,
        study_instance_uid=None,
        patient_key="HOSP|A",
    )
    untrusting = trusted.model_copy(
        update={"emr": trusted.emr.model_copy(update={"tls_ca": str(pki.rogue_ca)})}
    )
    doubtful = Hl7Sender(database, untrusting)
    try:
        assert doubtful.step()
    finally:
        doubtful.close()
    [row] = rows(database, "SELECT state, last_error FROM hl7_outbox")
    assert row["state"] == "pending"
    assert "TLS" in row["last_error"] and "certificate not trusted" in row["last_error"]
    assert peer.received() == []
    with database.connection() as conn:
        conn.execute("UPDATE hl7_outbox SET next_attempt_at = clock_timestamp()")
    sender = Hl7Sender(database, trusted)
    try:
        wait_until(lambda: (sender.step(), peer.received())[1], 30, "the ORU delivered")
    finally:
        sender.close()
    [received] = peer.received()
    assert received["control_id"] == "TLS-ORU-1"
    assert any(outcome.startswith("ok TLSv1.") for outcome in peer.handshakes())
    [row] = rows(database, "SELECT state FROM hl7_outbox")
    assert row["state"] == "sent"
    database.close()
