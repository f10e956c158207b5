"""The ATNA audit trail against a real syslog collector and a real PostgreSQL: what arrives,
in which order, with which participants; nothing lost while the collector is down; records
PostgreSQL itself will not change; and no patient identifier in any log line."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    DigitalXRayImageStorageForPresentation,
    Verification,
)

from integrations.audit.sender import AuditSender
from integrations.audit.trail import AuditTrail
from integrations.db.connection import Database, open_database
from integrations.db.outbox import OutboxStore
from integrations.hl7.sender import Hl7Sender
from tests.dicom_samples import make_instance
from tests.fix_hl7 import wait_until
from tests.fix_orthanc import NODE_AE_TITLE
from tests.integration.emr.helpers import fast_emr
from tests.site import running_node

PATIENT_ID = "AUDIT-MRN-739184"
ISSUER = "AUDITHOSP"
STUDY_UID = "1.2.826.0.1.3680043.8.498.739184"


def audit_settings(collector, **overrides) -> dict:
    return {
        "syslog_host": "127.0.0.1",
        "syslog_port": collector.port,
        "syslog_transport": collector.transport,
        "audit_source_id": "PACSFLOW-TEST",
        "retry_delays_seconds": [0.2],
        "retry_jitter": 0.0,
        "connect_timeout_seconds": 2.0,
        "poll_seconds": 0.1,
        **overrides,
    }


def add_study(database: Database, study_uid: str = STUDY_UID, patient_id: str = PATIENT_ID) -> None:
    with database.connection() as conn:
        conn.execute(
            "INSERT INTO studies (study_instance_uid, patient_id, issuer_of_patient_id, patient_name)"
            " VALUES (%s, %s, %s, 'Audit^Test')",
            (study_uid, patient_id, ISSUER),
        )


@contextmanager
def running_sender(database: Database, settings) -> Iterator[AuditSender]:
    sender = AuditSender(database, settings)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield sender
    finally:
        stop.set()
        thread.join(10)


def records(database: Database, kind: str | None = None) -> list[dict]:
    with database.connection() as conn:
        return conn.execute(
            "SELECT * FROM audit_records WHERE %(kind)s::text IS NULL OR kind = %(kind)s ORDER BY id",
            {"kind": kind},
        ).fetchall()


def test_login_view_export_and_ack_reach_the_collector_with_user_patient_and_study(
    settings_factory, make_syslog_collector, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    collector = make_syslog_collector("tcp")
    settings = settings_factory(audit=audit_settings(collector))
    database = open_database(settings)
    add_study(database)
    trail = AuditTrail(database, settings)
    trail.user_login("dr.grey", "10.20.30.40", success=False, detail="invalid credentials")
    trail.user_login("dr.grey", "10.20.30.40", success=True)
    trail.study_viewed("dr.grey", "10.20.30.40", STUDY_UID, roles=["radiologist", "it_admin"])
    trail.exported("dr.grey", "10.20.30.40", STUDY_UID, destination="overlay.png")
    trail.finding_acknowledged(STUDY_UID, user="dr.grey", via="console")
    trail.user_logout("dr.grey", "10.20.30.40")
    assert AuditSender(database, settings).drain() == 6
    got = collector.wait_for(6)
    assert [entry.get("error") for entry in got] == [None] * 6
    assert [(e["event_id"], e["event_types"], e["outcome"]) for e in got] == [
        ("110114", ["110122"], "4"),
        ("110114", ["110122"], "0"),
        ("110103", [], "0"),
        ("110106", [], "0"),
        ("110103", ["ACK"], "0"),
        ("110114", ["110123"], "0"),
    ]
    for entry in got:
        assert (entry["facility"], entry["version"], entry["msgid"]) == (10, 1, "IHE+RFC-3881")
        assert entry["bom"] and entry["structured_data"] == "-"
        assert entry["audit_source_id"] == "PACSFLOW-TEST"
        requestors = [user["id"] for user in entry["users"] if user["requestor"] == "true"]
        assert requestors == ["dr.grey"]
    assert [entry["severity"] for entry in got] == [4, 5, 5, 5, 5, 5]
    for entry in got[2:5]:
        assert entry["patients"] == [f"{PATIENT_ID}^^^{ISSUER}"]
        assert entry["studies"] == [STUDY_UID]
    assert got[0]["patients"] == [] and got[0]["users"][0]["host"] == "10.20.30.40"
    assert got[2]["users"][0]["role"] == "radiologist"  # the first RoleIDCode of the viewer
    assert 'csd-code="it_admin"' in got[2]["xml"]
    # The summary the IT view searches carries no patient identifier.
    summaries = trail.search(user_id="dr.grey")
    assert len(summaries) == 6 and PATIENT_ID not in repr(summaries)
    assert PATIENT_ID not in caplog.text
    database.close()


def test_collector_down_then_up_loses_nothing_and_keeps_the_order(
    settings_factory, make_syslog_collector, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    collector = make_syslog_collector("tcp")
    settings = settings_factory(audit=audit_settings(collector))
    database = open_database(settings)
    trail = AuditTrail(database, settings)
    with running_sender(database, settings):
        for index in range(3):
            trail.user_login(f"user-{index}", "10.0.0.1", success=True)
        collector.wait_for(3)
        collector.stop()  # the kept connection is closed under the sender
        for index in range(3, 9):
            trail.user_login(f"user-{index}", "10.0.0.1", success=True)
        wait_until(
            lambda: any("attempt" in r.getMessage() for r in caplog.records), 10, "a failed attempt"
        )
        with database.connection() as conn:
            pending = conn.execute(
                "SELECT count(*) AS n FROM audit_outbox WHERE state = 'pending'"
            ).fetchone()["n"]
        assert pending == 6
        collector.start()
        got = collector.wait_for(9)
    users = [next(u["id"] for u in e["users"] if u["requestor"] == "true") for e in got]
    assert users == [f"user-{index}" for index in range(9)]
    assert len(collector.settle(0.5)) == 9  # and nothing twice
    with database.connection() as conn:
        states = conn.execute(
            "SELECT state, count(*) AS n FROM audit_outbox GROUP BY state"
        ).fetchall()
    assert [(row["state"], row["n"]) for row in states] == [("sent", 9)]
    database.close()


def test_tls_with_client_certificate_and_udp(
    settings_factory, make_syslog_collector, syslog_tls
) -> None:
    tls = make_syslog_collector("tls", tls=syslog_tls, require_client_cert=True)
    settings = settings_factory(
        audit=audit_settings(
            tls,
            tls_ca_file=str(syslog_tls.ca),
            tls_cert_file=str(syslog_tls.client_cert),
            tls_key_file=str(syslog_tls.client_key),
        )
    )
    database = open_database(settings)
    AuditTrail(database, settings).user_login("tls-user", "10.0.0.2", success=True)
    assert AuditSender(database, settings).drain() == 1
    [entry] = tls.wait_for(1)
    assert entry.get("error") is None and entry["transport"] == "tls"
    assert entry["users"][0]["id"] == "tls-user"

    # A collector certificate the CA did not sign is refused: the record stays queued.
    untrusted = settings_factory(audit=audit_settings(tls, tls_ca_file=str(syslog_tls.client_cert)))
    AuditTrail(database, untrusted).user_login("second", "10.0.0.2", success=True)
    sender = AuditSender(database, untrusted)
    sender.step()
    with database.connection() as conn:
        row = conn.execute(
            "SELECT state, last_error FROM audit_outbox ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert row["state"] == "pending" and "CERTIFICATE_VERIFY_FAILED" in row["last_error"]
    sender.close()

    udp = make_syslog_collector("udp")
    udp_settings = settings_factory(audit=audit_settings(udp))
    with database.connection() as conn:  # only the new record for the UDP collector
        conn.execute("UPDATE audit_outbox SET state = 'sent' WHERE state = 'pending'")
    AuditTrail(database, udp_settings).user_login("udp-user", "10.0.0.3", success=True)
    assert AuditSender(database, udp_settings).drain() == 1
    [entry] = udp.wait_for(1)
    assert entry["transport"] == "udp" and entry["users"][0]["id"] == "udp-user"
    database.close()


def test_audit_records_are_append_only_in_postgresql(settings_factory) -> None:
    settings = settings_factory()
    database = open_database(settings)
    record_id = AuditTrail(database, settings).user_login("mallory", "10.6.6.6", success=False)
    with database.connection() as conn:
        for statement in (
            "UPDATE audit_records SET user_id = 'someone-else' WHERE id = %s",
            "UPDATE audit_records SET message = '' WHERE id = %s",
            "DELETE FROM audit_records WHERE id = %s",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement, (record_id,))
        # The delivery state lives apart and moves on.
        conn.execute(
            "UPDATE audit_outbox SET state = 'sent' WHERE audit_record_id = %s", (record_id,)
        )
        row = conn.execute(
            "SELECT user_id FROM audit_records WHERE id = %s", (record_id,)
        ).fetchone()
    assert row["user_id"] == "mallory"
    database.close()


def test_disabled_audit_records_nothing(settings_factory) -> None:
    settings = settings_factory(audit={"enabled": False})
    database = open_database(settings)
    assert AuditTrail(database, settings).user_login("x", "h", success=True) is None
    assert records(database) == []
    database.close()


def test_each_association_accepted_or_rejected_is_one_record(
    settings_factory, node_port, make_syslog_collector, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    collector = make_syslog_collector("tcp")
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": ["MODALITY"]},
        study={"quiet_seconds": 30},
        audit=audit_settings(collector),
    )
    instances = [make_instance("audit-assoc", number=n, patient_id=PATIENT_ID) for n in (1, 2, 3)]
    with running_node(settings, close_studies=False) as site:
        ae = AE(ae_title="MODALITY")
        ae.add_requested_context(DigitalXRayImageStorageForPresentation)
        assoc = ae.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
        assert assoc.is_established
        for instance in instances:
            assert assoc.send_c_store(instance).Status == 0x0000
        assoc.release()
        echo_only = AE(ae_title="MODALITY")
        echo_only.add_requested_context(Verification)
        assoc = echo_only.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
        assert assoc.is_established and assoc.send_c_echo().Status == 0x0000
        assoc.release()
        stranger = AE(ae_title="STRANGER")
        stranger.add_requested_context(DigitalXRayImageStorageForPresentation)
        assert stranger.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE).is_rejected
        wait_until(lambda: len(records(site.database)) >= 3, 10, "three association records")
        assert AuditSender(site.database, settings).drain() == 3
        rows = records(site.database)
    # One record each (the accepted one is written when its connection closes).
    assert sorted((r["kind"], r["event_id"], r["outcome"], r["user_id"]) for r in rows) == [
        ("association", "110104", 0, "MODALITY"),
        ("association", "110113", 0, "MODALITY"),  # C-ECHO only: Node Authentication, success
        ("association_rejected", "110113", 4, "STRANGER"),
    ]
    got = collector.wait_for(3)
    accepted = next(e for e in got if e["event_id"] == "110104")
    assert accepted["studies"] == [str(instances[0].StudyInstanceUID)]
    assert accepted["patients"] == [PATIENT_ID]
    assert accepted["action"] == "C"
    rejected = next(e for e in got if e["event_id"] == "110113" and e["outcome"] == "4")
    assert rejected["event_types"] == ["110126"] and rejected["patients"] == []
    assert len(collector.settle(0.3)) == 3
    assert PATIENT_ID not in caplog.text


def test_an_emr_delivery_is_one_export_record(settings_factory, make_mllp_peer) -> None:
    peer = make_mllp_peer(validate=False)
    settings = settings_factory(emr=fast_emr(peer.port))
    database = open_database(settings)
    add_study(database)
    OutboxStore(database).enqueue(
        message_control_id="AUDIT1",
        message_type="ORU^R01",
        payload=(
            "MSH|^~\\&|PACSFLOW|PACSFLOW|EMR|HOSPITAL|20260301||ORU^R01^ORU_R01|AUDIT1|P|2.5.1\r"
            f"PID|1||{PATIENT_ID}^^^{ISSUER}^MR||DOE^JANE\r"
        ),
        study_instance_uid=STUDY_UID,
        patient_key=f"{ISSUER}|{PATIENT_ID}",
    )
    sender = Hl7Sender(database, settings)
    sender.on_delivered = AuditTrail(database, settings).emr_delivery_hook("hl7")
    assert sender.drain() == 1
    sender.close()
    peer.wait_for(1)
    [row] = records(database)
    assert (row["kind"], row["event_id"], row["study_instance_uid"]) == (
        "result_hl7",
        "110106",
        STUDY_UID,
    )
    assert f"{PATIENT_ID}^^^{ISSUER}" in row["message"]
    assert f'UserID="mllp://127.0.0.1:{peer.port}"' in row["message"]
    assert 'csd-code="110152"' in row["message"]  # a remote system: Destination, not media
    database.close()


def test_start_records_the_settings_digest_and_a_changed_configuration(settings_factory) -> None:
    settings = settings_factory()
    database = open_database(settings)
    start, change = AuditTrail(database, settings).application_started("operator")
    assert start is not None and change is None
    assert AuditTrail(database, settings).application_started("operator")[1] is None
    changed = settings_factory(study={"quiet_seconds": 12.0})
    start, change = AuditTrail(database, changed).application_started("operator")
    assert change is not None
    kinds = [(r["kind"], r["event_id"], r["event_type"]) for r in records(database)]
    assert kinds == [
        ("application_start", "110100", "110120"),
        ("application_start", "110100", "110120"),
        ("application_start", "110100", "110120"),
        ("configuration_change", "110113", "110131"),
    ]
    database.close()


def test_audit_sender_cli_sends_and_its_log_names_no_patient(
    settings_factory, make_syslog_collector, pacsflow_process, clean_database_url
) -> None:
    collector = make_syslog_collector("tcp")
    settings = settings_factory(audit=audit_settings(collector))
    database = open_database(settings)
    add_study(database)
    trail = AuditTrail(database, settings)
    trail.study_viewed("dr.who", "10.1.1.1", STUDY_UID)
    process = pacsflow_process(
        ["-v", "audit-sender"],
        {"database": {"url": clean_database_url}, "audit": audit_settings(collector)},
    )
    collector.wait_for(1)
    collector.stop()
    trail.exported("dr.who", "10.1.1.1", STUDY_UID)
    wait_until(lambda: "next try" in process.log, 15, "a failed attempt in the sender's log")
    collector.start()
    got = collector.wait_for(2)
    assert all(entry["patients"] == [f"{PATIENT_ID}^^^{ISSUER}"] for entry in got)
    process.stop()
    log = process.log
    assert "audit sender started" in log
    for identifier in (PATIENT_ID, ISSUER, "Audit^Test"):
        assert identifier not in log
    database.close()


def test_each_result_object_the_pacs_stored_is_one_transfer_record(
    settings_factory, clean_orthanc, tmp_path
) -> None:
    from integrations.dicom.result_sender import ResultsSender
    from tests.fix_orthanc import PACS_AE_TITLE
    from tests.integration.results.outbox_helpers import add_study as add_result_study
    from tests.integration.results.outbox_helpers import built_results, enqueue

    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE},
        pacs={"ae_title": PACS_AE_TITLE, "port": clean_orthanc.dicom_port, "timeout_seconds": 5},
        results={"retry_delays_seconds": [0.2], "retry_jitter": 0},
    )
    database = open_database(settings)
    image, reports, overlays = built_results(tmp_path)
    study_uid = add_result_study(database, image)
    enqueue(database, study_uid, reports, overlays)
    sender = ResultsSender(database, settings)
    sender.on_delivered = AuditTrail(database, settings).results_delivery_hook()
    sent = len(reports) + len(overlays)
    assert sender.drain() == sent
    # Queued again with the same bytes: "already stored", nothing sent, nothing audited.
    enqueue(database, study_uid, reports, overlays)
    assert sender.drain() == sent
    sender.close()
    rows = records(database, "result_pacs")
    assert len(rows) == sent
    assert {(r["event_id"], r["action"], r["study_instance_uid"]) for r in rows} == {
        ("110104", "R", study_uid)
    }
    assert all(str(image.PatientID) in r["message"] for r in rows)
    assert all(f'UserID="{PACS_AE_TITLE}"' in r["message"] for r in rows)
    database.close()


def test_emr_sender_cli_audits_each_delivery_and_logs_no_patient(
    settings_factory, make_mllp_peer, pacsflow_process, clean_database_url
) -> None:
    peer = make_mllp_peer(validate=False)
    settings = settings_factory()
    database = open_database(settings)
    add_study(database)
    OutboxStore(database).enqueue(
        message_control_id="AUDITCLI1",
        message_type="ORU^R01",
        payload=(
            "MSH|^~\\&|PACSFLOW|PACSFLOW|EMR|HOSPITAL|20260301||ORU^R01^ORU_R01|AUDITCLI1|P|2.5.1\r"
            f"PID|1||{PATIENT_ID}^^^{ISSUER}^MR||AUDIT^TEST\r"
        ),
        study_instance_uid=STUDY_UID,
        patient_key=f"{ISSUER}|{PATIENT_ID}",
    )
    process = pacsflow_process(
        ["-v", "emr-sender", "--only", "hl7"],
        {"database": {"url": clean_database_url}, "emr": fast_emr(peer.port)},
    )
    peer.wait_for(1)
    [row] = wait_until(lambda: records(database, "result_hl7"), 15, "the delivery's audit record")
    assert row["study_instance_uid"] == STUDY_UID and PATIENT_ID in row["message"]
    process.stop()
    for identifier in (PATIENT_ID, "AUDIT^TEST"):
        assert identifier not in process.log
    database.close()
