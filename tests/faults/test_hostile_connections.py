"""Hostile and broken clients against the node (a real ``pacsflow node`` process) and the MLLP
listener, on loopback: oversized PDUs are refused before they are buffered (the process RSS
is measured), idle sockets neither lock real senders out nor outstay the negotiation timeout,
and every refused or closed connection is recorded exactly once."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import dict_row
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification

from deployments.orthanc import free_port
from integrations.dicom.scp import DicomNode
from integrations.dicom.status import STORE_CANNOT_UNDERSTAND, SUCCESS
from tests.dicom_samples import make_instance, study_files
from tests.emr_samples import adt
from tests.fix_dcmtk import echoscu, storescu
from tests.integration.emr.helpers import msa, running_listener

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_AE_TITLE = "PACSFLOW"
NEGOTIATION_TIMEOUT = 2.0
MIB = 1024 * 1024
RSS_GROWTH_LIMIT_KB = 30 * 1024


@dataclass
class NodeProcess:
    process: subprocess.Popen[bytes]
    port: int
    database_url: str

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1])

    def events(self, kind: str) -> list[dict]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            return conn.execute(
                "SELECT * FROM node_events WHERE kind = %s ORDER BY id", (kind,)
            ).fetchall()

    def audit_records(self, kind: str) -> list[dict]:
        with psycopg.connect(self.database_url, row_factory=dict_row) as conn:
            return conn.execute(
                "SELECT id, kind, outcome FROM audit_records WHERE kind = %s ORDER BY id", (kind,)
            ).fetchall()


@contextmanager
def node_process(settings_factory, tmp_path: Path, **env_overrides: str) -> Iterator[NodeProcess]:
    settings = settings_factory()
    port = free_port()
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("PACSFLOW_")},
        "PACSFLOW_DATABASE__URL": settings.database.url,
        "PACSFLOW_NODE__PORT": str(port),
        "PACSFLOW_NODE__AE_TITLE": NODE_AE_TITLE,
        "PACSFLOW_NODE__STORAGE_DIR": str(settings.node.storage_dir),
        "PACSFLOW_NODE__ALLOWED_CALLERS": '["MODALITY"]',
        "PACSFLOW_NODE__NEGOTIATION_TIMEOUT_SECONDS": str(NEGOTIATION_TIMEOUT),
        "PACSFLOW_ROUTING__RULES": '[{"name": "chest", "modality": ["DX"], "analyzers": ["chest-xray"]}]',
        "PACSFLOW_CONFIG": "",
        "PYTHONPATH": str(REPO_ROOT),
        **env_overrides,
    }
    log = open(tmp_path / "node.log", "ab")  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "node"],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        deadline = time.monotonic() + 60
        while echoscu("MODALITY", NODE_AE_TITLE, port).returncode != 0:
            assert process.poll() is None, (tmp_path / "node.log").read_text()
            assert time.monotonic() < deadline, "node did not start"
            time.sleep(0.2)
        yield NodeProcess(process, port, settings.database.url)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pdu_header(pdu_type: int, length: int) -> bytes:
    return struct.pack(">BBL", pdu_type, 0, length)


def flood_until_closed(sock: socket.socket, total: int, timeout: float = 10.0) -> tuple[int, float]:
    """Send up to ``total`` zero bytes; (bytes the node let through, seconds) once it closes."""
    started = time.monotonic()
    sock.settimeout(timeout)
    zeros = bytes(MIB)
    sent = 0
    try:
        while sent < total:
            sock.sendall(zeros)
            sent += len(zeros)
    except TimeoutError:
        pytest.fail(f"the node neither read nor closed the connection after {sent} bytes")
    except OSError:
        return sent, time.monotonic() - started
    pytest.fail(f"the node read all {total} bytes of an oversized PDU")


def test_oversized_associate_rq_is_aborted_before_it_is_buffered(settings_factory, tmp_path):
    with node_process(settings_factory, tmp_path) as node:
        rss_before = node.rss_kb()
        sock = socket.create_connection(("127.0.0.1", node.port))
        sock.sendall(pdu_header(0x01, 0xFFFFFFF0))  # an A-ASSOCIATE-RQ of ~4 GB
        sock.settimeout(5)
        answer = sock.recv(10)
        assert answer[:1] == b"\x07", f"expected an A-ABORT, got {answer!r}"
        sent, seconds = flood_until_closed(sock, 200 * MIB)
        sock.close()
        growth = node.rss_kb() - rss_before
        print(
            f"A-ASSOCIATE-RQ flood: closed after {sent / MIB:.0f} MiB in {seconds:.2f} s, RSS +{growth} kB"
        )
        assert growth < RSS_GROWTH_LIMIT_KB
        assert seconds < 5
        time.sleep(0.5)
        events = node.events("pdu_refused")
        assert len(events) == 1, events
        assert events[0]["peer_host"] == "127.0.0.1"
        assert "0x01" in events[0]["detail"]
        assert echoscu("MODALITY", NODE_AE_TITLE, node.port).returncode == 0


def test_oversized_p_data_inside_an_association_is_aborted_before_it_is_buffered(
    settings_factory, tmp_path
):
    with node_process(settings_factory, tmp_path) as node:
        rss_before = node.rss_kb()
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE_TITLE)
        assert assoc.is_established
        raw = assoc.dul.socket.socket
        raw.sendall(pdu_header(0x04, 0xFFFFFFF0))  # a P-DATA-TF of ~4 GB
        sent, seconds = flood_until_closed(raw, 400 * MIB)
        deadline = time.monotonic() + 5
        while assoc.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
        assert assoc.is_aborted
        growth = node.rss_kb() - rss_before
        print(
            f"P-DATA-TF flood: closed after {sent / MIB:.0f} MiB in {seconds:.2f} s, RSS +{growth} kB"
        )
        assert growth < RSS_GROWTH_LIMIT_KB
        assert seconds < 5
        time.sleep(0.5)
        events = node.events("pdu_refused")
        assert len(events) == 1, events
        assert events[0]["peer_host"] == "127.0.0.1"
        assert "0x04" in events[0]["detail"]


def closed_by_peer(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


@pytest.mark.parametrize("idle_count", [16, 40])
def test_idle_sockets_do_not_lock_out_a_real_sender_and_are_closed_and_recorded_once(
    idle_count, settings_factory, tmp_path, dcmtk_tools
):
    files = study_files(tmp_path / "send", "idle-1", count=1)
    with node_process(settings_factory, tmp_path) as node:
        idle = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(idle_count)]
        time.sleep(0.3)
        started = time.monotonic()
        result = storescu("MODALITY", NODE_AE_TITLE, node.port, files)
        elapsed = time.monotonic() - started
        print(f"{idle_count} idle sockets: storescu took {elapsed:.2f} s")
        assert result.returncode == 0, result.stderr
        assert elapsed < 2.5
        deadline = time.monotonic() + NEGOTIATION_TIMEOUT + 3
        open_sockets = list(idle)
        while open_sockets and time.monotonic() < deadline:
            open_sockets = [sock for sock in open_sockets if not closed_by_peer(sock)]
        assert not open_sockets, f"{len(open_sockets)} idle sockets still open"
        time.sleep(1.0)
        events = node.events("connection_refused")
        assert len(events) == idle_count, [event["detail"] for event in events]
        assert {event["peer_host"] for event in events} == {"127.0.0.1"}
        for sock in idle:
            sock.close()
        # Places are free again: the full per-source quota negotiates at once.
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(Verification)
        associations = [
            ae.associate("127.0.0.1", node.port, ae_title=NODE_AE_TITLE) for _ in range(8)
        ]
        assert all(assoc.is_established for assoc in associations)
        for assoc in associations:
            assoc.release()
        assert len(node.events("connection_refused")) == idle_count


def test_a_slowly_dripped_associate_rq_is_closed_at_the_negotiation_deadline(
    settings_factory, tmp_path
):
    with node_process(settings_factory, tmp_path) as node:
        sock = socket.create_connection(("127.0.0.1", node.port))
        started = time.monotonic()
        sock.sendall(pdu_header(0x01, 1000))
        closed_after = None
        with suppress(OSError):
            for _ in range(40):  # one byte every 0.25 s: each read is quick, the whole is not
                sock.sendall(b"\x00")
                if closed_by_peer(sock):
                    break
                time.sleep(0.2)
        closed_after = time.monotonic() - started
        sock.close()
        assert closed_after < NEGOTIATION_TIMEOUT + 1.5, closed_after
        time.sleep(0.5)
        events = node.events("connection_refused")
        assert len(events) == 1, events
        assert "within" in events[0]["detail"] and events[0]["peer_host"] == "127.0.0.1"


def test_pynetdicoms_local_limit_rejection_is_logged_and_recorded_once(settings_factory, tmp_path):
    with node_process(settings_factory, tmp_path, PACSFLOW_NODE__MAX_ASSOCIATIONS="2") as node:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(Verification)
        held = [ae.associate("127.0.0.1", node.port, ae_title=NODE_AE_TITLE) for _ in range(2)]
        assert all(assoc.is_established for assoc in held)
        third = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE_TITLE)
        assert third.is_rejected
        for assoc in held:
            assoc.release()
        events = node.events("association_rejected")
        assert len(events) == 1, events
        assert "local limit exceeded" in events[0]["detail"]
        assert (events[0]["peer_host"], events[0]["calling_ae_title"]) == ("127.0.0.1", "MODALITY")
        assert node.events("connection_refused") == []
        assert len(node.audit_records("association_rejected")) == 1


def test_bad_sop_instance_uid_gets_a_clean_refusal_and_one_event(
    settings_factory, tmp_path, monkeypatch
):
    # The sender here is a lenient modality: an in-process node of an earlier test turned on
    # pynetdicom's process-wide UID check, which would stop the bad UID before it is sent.
    monkeypatch.setattr(pynetdicom_config, "ENFORCE_UID_CONFORMANCE", False)
    with node_process(settings_factory, tmp_path) as node:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE_TITLE)
        assert assoc.is_established
        bad = make_instance("bad-uid-1")
        bad.SOPInstanceUID = "1.2.3.abc"  # valid for a lenient sender, not conformant
        bad.file_meta.MediaStorageSOPInstanceUID = "1.2.3.abc"
        refused = assoc.send_c_store(bad)
        assert refused.Status == STORE_CANNOT_UNDERSTAND
        good = make_instance("bad-uid-1", number=2)
        assert assoc.send_c_store(good).Status == SUCCESS  # the association lives on
        assoc.release()
        events = node.events("store_refused")
        assert len(events) == 1, events
        assert events[0]["peer_host"] == "127.0.0.1"
        assert events[0]["sop_instance_uid"] == "1.2.3.abc"
        assert events[0]["calling_ae_title"] == "MODALITY"
        assert [r["outcome"] for r in node.audit_records("instance_refused")] == [4]


def test_refused_instance_records_the_peer_host(settings_factory, tmp_path):
    with node_process(settings_factory, tmp_path) as node:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE_TITLE)
        dataset = make_instance("bad-study-uid-1")
        dataset.StudyInstanceUID = "1.2.abc"  # refused by the node's own dataset checks
        answer = assoc.send_c_store(dataset)
        assoc.release()
        assert answer.Status == STORE_CANNOT_UNDERSTAND
        events = node.events("store_refused")
        assert len(events) == 1 and events[0]["peer_host"] == "127.0.0.1", events


def test_error_comment_with_a_backslash_stays_one_value():
    response = DicomNode._failure(STORE_CANNOT_UNDERSTAND, r"cannot store C:\spool\x: denied")
    assert response["ErrorComment"].VM == 1
    assert "\\" not in response.ErrorComment
    encoded = response["ErrorComment"].value
    assert encoded == "cannot store C:/spool/x: denied"


def test_idle_sockets_on_the_mllp_port_do_not_close_the_adt_feed(settings_factory):
    settings = settings_factory(hl7={"first_frame_timeout_seconds": NEGOTIATION_TIMEOUT})
    with running_listener(settings) as site:
        idle = [socket.create_connection(("127.0.0.1", site.port)) for _ in range(40)]
        time.sleep(0.3)
        started = time.monotonic()
        sender = site.sender()
        assert msa(sender.send(adt("A01", "IDLE1")))[:2] == ("AA", "IDLE1")
        elapsed = time.monotonic() - started
        print(f"40 idle MLLP sockets: AA after {elapsed:.2f} s")
        assert elapsed < 2
        deadline = time.monotonic() + NEGOTIATION_TIMEOUT + 3
        open_sockets = list(idle)
        while open_sockets and time.monotonic() < deadline:
            open_sockets = [sock for sock in open_sockets if not closed_by_peer(sock)]
        assert not open_sockets, f"{len(open_sockets)} idle sockets still open"
        # After its first message the sender has the long idle timeout, not the short one.
        assert msa(sender.send(adt("A08", "IDLE2")))[:2] == ("AA", "IDLE2")
        sender.close()
        for sock in idle:
            with suppress(OSError):
                sock.close()


def _with_bad_uid(pdu: bytes, tag: bytes) -> bytes:
    """A P-DATA-TF whose command set's UID element ``tag`` ends in letters (same length)."""
    at = pdu.index(tag, 12)  # past the PDU and PDV headers
    length = int.from_bytes(pdu[at + 4 : at + 8], "little")
    start = at + 8
    value = pdu[start : start + length].rstrip(b"\x00")
    return pdu[:start] + value[:-3] + b"abc" + pdu[start + len(value) :]


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def test_non_ascii_ae_titles_and_bad_command_uids_give_one_warning_one_event_no_traceback(
    settings_factory, tmp_path
):
    """pynetdicom logs a traceback for a non-ASCII AE title (one per codec it tries) and an
    ERROR line for a non-conformant UID in a command set; the console shows the node's own
    WARNING, naming the peer and the reason, once per input, and the listener stays up."""
    from tests.faults.test_fuzz_network import CALLING, _capture_seeds

    allowed = f'["MODALITY", "{CALLING}"]'
    with node_process(settings_factory, tmp_path, PACSFLOW_NODE__ALLOWED_CALLERS=allowed) as node:
        seeds = _capture_seeds(node.port)
        console_before = len((tmp_path / "node.log").read_text())
        for at, title in ((26, "MODALITÉ".encode()), (10, "PACSFLÖW".encode("latin-1"))):
            request = bytearray(seeds.associate_rq)
            request[at : at + 16] = title.ljust(16, b" ")
            with socket.create_connection(("127.0.0.1", node.port)) as sock:
                sock.sendall(bytes(request))
                assert _answer(sock)[:1] == b"\x07"  # A-ABORT
                assert _answer(sock) == b""  # and closed
        # a C-STORE-RQ whose Affected SOP Instance UID (0000,1000) is not a UID: refused
        with socket.create_connection(("127.0.0.1", node.port)) as sock:
            sock.sendall(seeds.associate_rq)
            assert _answer(sock)[:1] == b"\x02"  # A-ASSOCIATE-AC
            store = [_with_bad_uid(seeds.store[0], b"\x00\x00\x00\x10"), *seeds.store[1:]]
            sock.sendall(b"".join(store))
            response = _answer(sock)
            assert response[:1] == b"\x04"
            assert b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\xc0" in response  # Status 0xC000
            sock.sendall(struct.pack(">BBLL", 0x05, 0, 4, 0))  # A-RELEASE-RQ
            assert _answer(sock)[:1] == b"\x06"  # A-RELEASE-RP: the association lived on
        # a C-ECHO-RQ whose Affected SOP Class UID (0000,0002) is not a UID: aborted
        with socket.create_connection(("127.0.0.1", node.port)) as sock:
            sock.sendall(seeds.associate_rq)
            assert _answer(sock)[:1] == b"\x02"
            sock.sendall(_with_bad_uid(seeds.echo[0], b"\x00\x00\x02\x00"))
            assert _answer(sock)[:1] == b"\x07"
        # the listener is up: the next association stores
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
        assoc = ae.associate("127.0.0.1", node.port, ae_title=NODE_AE_TITLE)
        assert assoc.is_established
        assert assoc.send_c_store(make_instance("after-bad-input")).Status == SUCCESS
        assoc.release()
        time.sleep(0.5)
        console = (tmp_path / "node.log").read_text()[console_before:]
        refused = node.events("pdu_refused")
        stores_refused = node.events("store_refused")
    print(console)
    assert "Traceback" not in console
    assert [line for line in console.splitlines() if " pynetdicom." in line] == []
    warnings = [line for line in console.splitlines() if " WARNING " in line]
    assert len(warnings) == 4, warnings
    assert all("127.0.0.1" in line for line in warnings), warnings
    assert sum("using the ascii codec" in line for line in warnings) == 2, warnings
    assert sum("invalid Affected SOP Instance UID" in line for line in warnings) == 1, warnings
    assert sum("undecodable DIMSE message" in line for line in warnings) == 1, warnings
    assert len(refused) == 3, [event["detail"] for event in refused]
    assert {event["peer_host"] for event in refused} == {"127.0.0.1"}
    assert [(e["peer_host"], e["calling_ae_title"]) for e in stores_refused] == [
        ("127.0.0.1", CALLING)
    ]


def _c_store_pdus(dataset, context_id: int, message_id: int, max_pdu: int = 16384) -> bytes:
    """The P-DATA-TF PDUs of one C-STORE-RQ, as a requestor sends them (pynetdicom's encoder)."""
    from io import BytesIO

    from pynetdicom.dimse_messages import C_STORE_RQ
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode
    from pynetdicom.pdu import P_DATA_TF

    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = dataset.SOPClassUID
    request.AffectedSOPInstanceUID = dataset.SOPInstanceUID
    request.Priority = 2
    request.DataSet = BytesIO(encode(dataset, False, True))
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    stream = b""
    for primitive in message.encode_msg(context_id, max_pdu):
        pdu = P_DATA_TF()
        pdu.from_primitive(primitive)
        stream += pdu.encode()
    return stream


def _until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    stream = b""
    with suppress(OSError):
        while chunk := sock.recv(65536):
            stream += chunk
    return stream


def test_a_release_sent_right_after_the_last_p_data_gets_the_store_response_first(
    settings_factory, tmp_path
):
    """A sender that does not wait for the C-STORE-RSP before its A-RELEASE-RQ: the node
    stores the instance (file and row), answers it, and only then releases."""
    from tests.faults.test_fuzz_network import CALLING, _capture_seeds, _split_pdus

    allowed = f'["MODALITY", "{CALLING}"]'
    with node_process(settings_factory, tmp_path, PACSFLOW_NODE__ALLOWED_CALLERS=allowed) as node:
        seeds = _capture_seeds(node.port)  # its A-ASSOCIATE-RQ: DX storage is context 3
        answers, stored = [], []
        for number in range(1, 51):
            instance = make_instance("release-race", number=number, size=128)
            with socket.create_connection(("127.0.0.1", node.port)) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(seeds.associate_rq)
                sock.settimeout(10)
                assert sock.recv(65536)[:1] == b"\x02"
                release = struct.pack(">BBLL", 0x05, 0, 4, 0)
                sock.sendall(_c_store_pdus(instance, 3, number) + release)  # one write
                answers.append(_split_pdus(_until_closed(sock)))
            with psycopg.connect(node.database_url, row_factory=dict_row) as conn:
                row = conn.execute(
                    "SELECT path FROM instances WHERE sop_instance_uid = %s",
                    (instance.SOPInstanceUID,),
                ).fetchone()
            stored.append(row is not None and Path(row["path"]).is_file())
    print([[pdu[0] for pdu in pdus] for pdus in answers])
    for pdus in answers:
        assert [pdu[0] for pdu in pdus] == [0x04, 0x06]  # C-STORE-RSP, then A-RELEASE-RP
        assert b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00" in pdus[0]  # Status 0x0000
    assert stored == [True] * 50
