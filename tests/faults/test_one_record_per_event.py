"""One audit record and one metric increment per event: every rejected association, refused
instance, refused connection and failed delivery, triggered against real peers (dcmtk, a
pynetdicom modality, raw sockets, the MLLP recording peer, a PACS port that is down), is
counted in ``audit_records`` and in the Prometheus counters of the process that saw it."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom import _config as pynetdicom_config
from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation, Verification

from deployments.commands.hl7_listener import refusal_recorder
from deployments.orthanc import free_port
from integrations.audit.trail import AuditTrail
from integrations.db.connection import Database, open_database
from integrations.db.patients import PatientStore
from integrations.dicom.result_sender import ResultsSender
from integrations.dicom.status import STORE_CANNOT_UNDERSTAND, STORE_REFUSED_CHANGED_DUPLICATE
from integrations.emr.identifiers import MrnRules
from integrations.fhir.sender import FhirSender
from integrations.hl7.listener import AdtListener
from integrations.hl7.mllp import MllpServer
from integrations.hl7.sender import Hl7Sender
from tests.dicom_samples import make_instance
from tests.emr_samples import adt
from tests.faults.test_identity_and_clock_faults import smart_key_files, smart_settings
from tests.fix_dcmtk import echoscu
from tests.fix_hl7 import wait_until
from tests.integration.emr.helpers import AdtSender, fast_emr, msa
from tests.integration.emr.test_fhir_delivery import fhir_rows, queue
from tests.integration.emr.test_hl7_delivery import queue_result
from tests.integration.results.outbox_helpers import add_study, built_results, enqueue
from tests.site import running_node

NODE_AE_TITLE = "PACSFLOW"


class Metrics:
    """Prometheus samples of this process, as differences from when it was built."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self.samples = samples
        self.before = {self._key(s): self._value(s) for s in samples}

    @staticmethod
    def _key(sample: tuple[str, dict[str, str]]) -> str:
        name, labels = sample
        return name + "".join(f",{k}={v}" for k, v in sorted(labels.items()))

    @staticmethod
    def _value(sample: tuple[str, dict[str, str]]) -> float:
        return REGISTRY.get_sample_value(*sample) or 0.0

    def increments(self) -> dict[str, float]:
        return {self._key(s): self._value(s) - self.before[self._key(s)] for s in self.samples}


def audit_kinds(database: Database) -> dict[str, int]:
    with database.connection() as conn:
        rows = conn.execute(
            "SELECT kind, count(*) AS n FROM audit_records GROUP BY kind ORDER BY kind"
        ).fetchall()
    return {row["kind"]: row["n"] for row in rows}


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def wait_for_kinds(database: Database, expected: dict[str, int], timeout: float = 20) -> None:
    wait_until(
        lambda: all(audit_kinds(database).get(k, 0) >= n for k, n in expected.items()),
        timeout,
        f"audit records {expected}",
    )


def test_dicom_node_rejections_refusals_and_refused_connections_one_each(
    settings_factory, monkeypatch
):
    settings = settings_factory(
        node={
            "ae_title": NODE_AE_TITLE,
            "port": free_port(),
            "allowed_callers": ["MODALITY"],
            "max_associations": 2,
            "negotiation_timeout_seconds": 1.0,
            "on_changed_duplicate": "refuse",
        }
    )
    metrics = Metrics(
        ("pacsflow_node_associations_rejected_total", {}),
        ("pacsflow_node_instances_total", {"outcome": "refused"}),
        ("pacsflow_dicom_connections_refused_total", {"kind": "connection_refused"}),
        ("pacsflow_dicom_connections_refused_total", {"kind": "pdu_refused"}),
    )
    with running_node(settings, close_studies=False) as site:
        # 1. an unknown caller (dcmtk): rejected by the caller policy
        assert echoscu("STRANGER", NODE_AE_TITLE, site.port).returncode != 0
        # 2. pynetdicom's own rejection: max_associations (2) are held by a real modality
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian)
        ae.add_requested_context(Verification)
        wait_until(lambda: not site.node.ae.active_associations, 10, "no association left")
        held = ae.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
        other = ae.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
        assert held.is_established and other.is_established
        assert echoscu("MODALITY", NODE_AE_TITLE, site.port).returncode != 0
        # 3. refused instances on the held association: a non-conformant UID (a lenient
        # modality; the node's own dataset check refuses it), a changed duplicate
        monkeypatch.setattr(pynetdicom_config, "ENFORCE_UID_CONFORMANCE", False)
        bad = make_instance("one-record-1")
        bad.StudyInstanceUID = "1.2.abc"
        assert held.send_c_store(bad).Status == STORE_CANNOT_UNDERSTAND
        first = make_instance("one-record-2")
        assert held.send_c_store(first).Status == 0
        changed = make_instance("one-record-2")
        changed.PixelData = bytes(len(changed.PixelData))
        assert held.send_c_store(changed).Status == STORE_REFUSED_CHANGED_DUPLICATE
        held.release()
        other.release()
        # 4. a connection that never negotiates: closed at the negotiation deadline
        idle = socket.create_connection(("127.0.0.1", site.port))
        assert closed_by_peer(idle, timeout=10)
        idle.close()
        # 5. an A-ASSOCIATE-RQ declaring 4 GB: aborted unread
        flood = socket.create_connection(("127.0.0.1", site.port))
        flood.sendall(bytes([0x01, 0]) + (0xFFFFFFF0).to_bytes(4, "big"))
        assert closed_by_peer(flood, timeout=10)
        flood.close()
        expected = {
            "association_rejected": 2,
            "instance_refused": 2,
            "connection_refused": 2,
        }
        wait_for_kinds(site.database, expected)
        time.sleep(0.5)  # nothing more may arrive
        kinds = audit_kinds(site.database)
    assert {k: kinds.get(k, 0) for k in expected} == expected, kinds
    assert metrics.increments() == {
        "pacsflow_node_associations_rejected_total": 2,
        "pacsflow_node_instances_total,outcome=refused": 2,
        "pacsflow_dicom_connections_refused_total,kind=connection_refused": 1,
        "pacsflow_dicom_connections_refused_total,kind=pdu_refused": 1,
    }


@contextmanager
def audited_listener(settings) -> Iterator[tuple[MllpServer, Database]]:
    database = open_database(settings)
    listener = AdtListener(
        settings.hl7,
        PatientStore(database, MrnRules.from_settings(settings.mrn)),
        AuditTrail(database, settings),
    )
    server = listener.server(
        port=free_port(), on_refused=refusal_recorder(database, settings, tls=False)
    )
    server.start()
    try:
        yield server, database
    finally:
        server.stop()
        database.close()


def test_mllp_listener_refusals_one_each(settings_factory):
    settings = settings_factory(
        hl7={
            "first_frame_timeout_seconds": 1.0,
            "max_message_bytes": 2048,
            "max_connections_per_source": 2,
            "allowed_senders": [{"application": "ADTSYS"}],
        }
    )
    metrics = Metrics(
        ("pacsflow_hl7_connections_refused_total", {"reason": "connection_limit"}),
        ("pacsflow_hl7_connections_refused_total", {"reason": "no_first_message"}),
        ("pacsflow_hl7_connections_refused_total", {"reason": "framing_error"}),
        ("pacsflow_hl7_connections_refused_total", {"reason": "evicted"}),
        ("pacsflow_hl7_messages_refused_total", {}),
    )
    with audited_listener(settings) as (server, database):
        port = server.address[1]
        known, stranger = AdtSender(port), AdtSender(port)
        assert msa(known.send(adt("A01", "REC1")))[0] == "AA"
        refused = adt("A01", "REC2").replace("|ADTSYS|", "|STRANGER|", 1)
        assert msa(stranger.send(refused))[0] == "AR"
        # both places of this source are held by proven connections: the third is refused
        third = socket.create_connection(("127.0.0.1", port))
        assert closed_by_peer(third, timeout=10)
        third.close()
        known.close()
        stranger.close()
        wait_until(lambda: not server._server.connections, 10, "both connections gone")
        # a connection that sends nothing, and one that sends a frame over the limit
        idle = socket.create_connection(("127.0.0.1", port))
        assert closed_by_peer(idle, timeout=10)
        idle.close()
        big = socket.create_connection(("127.0.0.1", port))
        big.sendall(b"\x0b" + b"MSH|" + b"x" * 4096)
        assert closed_by_peer(big, timeout=10)
        big.close()
        expected = {"connection_refused": 3, "hl7_sender_refused": 1}
        wait_for_kinds(database, expected)
        time.sleep(0.5)
        kinds = audit_kinds(database)
    assert {k: kinds.get(k, 0) for k in expected} == expected, kinds
    assert metrics.increments() == {
        "pacsflow_hl7_connections_refused_total,reason=connection_limit": 1,
        "pacsflow_hl7_connections_refused_total,reason=no_first_message": 1,
        "pacsflow_hl7_connections_refused_total,reason=framing_error": 1,
        "pacsflow_hl7_connections_refused_total,reason=evicted": 0,
        "pacsflow_hl7_messages_refused_total": 1,
    }


def test_failed_deliveries_one_each(settings_factory, make_mllp_peer, tmp_path):
    peer = make_mllp_peer()
    peer.answers(default="AR")
    pacs_down = free_port()
    settings = settings_factory(
        emr=fast_emr(peer.port),
        pacs={"ae_title": "ORTHANC", "port": pacs_down, "timeout_seconds": 2},
        results={"retry_delays_seconds": [0.2], "retry_jitter": 0},
    )
    database = open_database(settings)
    trail = AuditTrail(database, settings)
    metrics = Metrics(
        ("pacsflow_deliveries_failed_total", {"sender": "hl7"}),
        ("pacsflow_deliveries_failed_total", {"sender": "results"}),
    )
    # an ORU the EMR refuses (AR): failed for good
    queue_result(database, settings, 77)
    hl7 = Hl7Sender(database, settings)
    hl7.on_failed = trail.emr_failure_hook(hl7.name)
    assert hl7.drain() == 1
    hl7.close()
    # result objects for a PACS that stays down past their delivery window
    image, reports, overlays = built_results(tmp_path)
    study_uid = add_study(database, image)
    objects = enqueue(database, study_uid, reports, overlays, give_up_after_hours=0.1 / 3600)
    time.sleep(0.2)
    results = ResultsSender(database, settings)
    results.on_failed = trail.results_failure_hook()
    results.drain(timeout=60)
    results.close()
    kinds = audit_kinds(database)
    with database.connection() as conn:
        failed_rows = conn.execute(
            "SELECT (SELECT count(*) FROM hl7_outbox WHERE state = 'failed')"
            " + (SELECT count(*) FROM results_outbox WHERE state = 'failed') AS n"
        ).fetchone()["n"]
    database.close()
    assert failed_rows == 1 + objects
    assert kinds.get("delivery_failed", 0) == 1 + objects, kinds
    assert metrics.increments() == {
        "pacsflow_deliveries_failed_total,sender=hl7": 1,
        "pacsflow_deliveries_failed_total,sender=results": objects,
    }


def test_refused_fhir_token_requests_one_each(
    settings_factory, make_fhir_server, monkeypatch, tmp_path
):
    """A token server that answers 503, then 500, then refuses the client assertion (signed
    with a key it does not know): each refused attempt is retried, and counted and audited once."""
    (tmp_path / "registered").mkdir()
    (tmp_path / "used").mkdir()
    public, _ = smart_key_files(tmp_path / "registered")
    _, private = smart_key_files(tmp_path / "used")  # not the key the token server knows
    server = make_fhir_server(auth="smart", client_id="pacsflow-ai", public_key=public)
    server.faults([], token_queue=(503, 500))
    settings = smart_settings(settings_factory, server, monkeypatch, private)
    database = open_database(settings)
    trail = AuditTrail(database, settings)
    metrics = Metrics(
        *(("pacsflow_fhir_tokens_refused_total", {"status": s}) for s in ("400", "500", "503"))
    )
    queue(database, settings, 1)
    sender = FhirSender(database, settings)
    sender.on_failed = trail.emr_failure_hook(sender.name)
    sender.client.on_token_refused = trail.fhir_token_hook()
    try:
        wait_until(
            lambda: sender.drain() >= 0 and fhir_rows(database)[0]["attempts"] >= 3,
            30,
            "three refused token requests",
        )
    finally:
        sender.close()
    row = fhir_rows(database)[0]
    kinds = audit_kinds(database)
    with database.connection() as conn:
        records = conn.execute(
            "SELECT user_id, message FROM audit_records WHERE kind = 'fhir_token_refused'"
            " ORDER BY id"
        ).fetchall()
    database.close()
    token_requests = [r["status"] for r in server.requests() if r["path"] == "/auth/token"]
    assert row["state"] == "pending" and "refused the client assertion" in row["last_error"]
    assert token_requests == [503, 500, 400]
    assert kinds.get("fhir_token_refused", 0) == 3, kinds
    assert "delivery_failed" not in kinds  # retried, not given up
    assert {r["user_id"] for r in records} == {"pacsflow-ai"}  # the client the server refused
    reasons = ("HTTP 503", "HTTP 500", "invalid_client")
    assert [reason in r["message"] for reason, r in zip(reasons, records, strict=True)] == [
        True
    ] * 3
    assert metrics.increments() == {
        "pacsflow_fhir_tokens_refused_total,status=400": 1,
        "pacsflow_fhir_tokens_refused_total,status=500": 1,
        "pacsflow_fhir_tokens_refused_total,status=503": 1,
    }
