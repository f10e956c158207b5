"""The results outbox against real Orthanc and PostgreSQL: what the sender stores, what a rerun
does not send again, what operators see and re-drive, and the alert when results are late."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from deployments.orthanc import free_port
from integrations.db.connection import open_database
from integrations.dicom.priors import CurrentStudy, search_priors
from integrations.dicom.result_sender import ResultsSender
from integrations.dicom.scu import DicomClient, Peer
from integrations.settings import PriorsSettings
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.integration.results.outbox_helpers import (
    add_study,
    built_results,
    enqueue,
    last_change,
    new_instances,
    outbox_rows,
)

WEBHOOK_SECRET = "test-secret-for-the-signed-webhook"


def outbox_settings(settings_factory, pacs_port: int, **results):
    return settings_factory(
        node={"ae_title": NODE_AE_TITLE},
        pacs={"ae_title": PACS_AE_TITLE, "port": pacs_port, "timeout_seconds": 5},
        results={"retry_delays_seconds": [0.2], "retry_jitter": 0, **results},
    )


def test_sr_goes_before_the_overlays_and_a_rerun_with_the_same_bytes_sends_nothing(
    settings_factory, clean_orthanc, tmp_path
):
    settings = outbox_settings(settings_factory, clean_orthanc.dicom_port)
    database = open_database(settings)
    image, reports, overlays = built_results(tmp_path)
    study_uid = add_study(database, image)
    before = last_change(clean_orthanc)
    # queued overlays first, SR last: the SR still leaves first
    enqueue(database, study_uid, [], overlays)
    enqueue(database, study_uid, reports, [])
    sender = ResultsSender(database, settings)
    assert sender.drain() == len(reports) + len(overlays)
    arrived = [change["sop_instance_uid"] for change in new_instances(clean_orthanc, before)]
    assert arrived[0] == reports[0].sop_instance_uid
    assert sorted(arrived[1:]) == sorted(item.sop_instance_uid for item in overlays)
    rows = outbox_rows(database, study_uid)
    assert {(row["state"], row["outcome"]) for row in rows} == {("sent", "stored")}
    assert {row["content_sha256"] for row in rows} == {
        item.content_sha256 for item in reports + overlays
    }
    assert all(row["sent_at"] is not None and row["status_code"] == 0 for row in rows)
    steps = sender.studies.steps(study_uid)
    assert steps["deliver_results:pacs"]["state"] == "completed"
    assert steps["deliver_results:pacs"]["detail"]["stored"] == len(rows)

    # A rerun with the same inputs builds the same bytes: queued again, nothing is sent.
    after_first = last_change(clean_orthanc)
    assert enqueue(database, study_uid, reports, overlays) == len(rows)
    assert sender.drain() == len(rows)
    rerun = outbox_rows(database, study_uid)[len(rows) :]
    assert {(row["state"], row["outcome"]) for row in rerun} == {("sent", "already stored")}
    assert new_instances(clean_orthanc, after_first) == []
    assert last_change(clean_orthanc) == after_first
    detail = sender.studies.steps(study_uid)["deliver_results:pacs"]["detail"]
    assert detail["already_stored"] == len(rows)
    sender.close()
    database.close()


def test_queuing_the_same_waiting_object_twice_keeps_one_and_a_new_content_supersedes_it(
    settings_factory, clean_orthanc, tmp_path
):
    settings = outbox_settings(settings_factory, free_port())  # the PACS is down
    database = open_database(settings)
    image, reports, overlays = built_results(tmp_path)
    study_uid = add_study(database, image)
    assert enqueue(database, study_uid, reports, overlays) == 1 + len(overlays)
    assert enqueue(database, study_uid, reports, overlays) == 0  # already waiting
    changed = [
        type(reports[0])(**{**reports[0].__dict__, "content_sha256": "0" * 64}),
    ]
    assert enqueue(database, study_uid, changed, []) == 1
    states = {
        (row["sop_instance_uid"], row["content_sha256"]): row["state"]
        for row in outbox_rows(database, study_uid)
    }
    assert states[(reports[0].sop_instance_uid, reports[0].content_sha256)] == "superseded"
    assert states[(reports[0].sop_instance_uid, "0" * 64)] == "pending"
    database.close()


def test_cli_lists_failed_deliveries_without_patient_data_and_retry_delivers_them(
    settings_factory, clean_orthanc, tmp_path, pacsflow_process, clean_database_url
):
    down = outbox_settings(settings_factory, free_port())
    database = open_database(down)
    image, reports, overlays = built_results(tmp_path)
    study_uid = add_study(database, image)
    # a retry window shorter than the backoff: the first failure gives up
    enqueue(database, study_uid, reports, overlays, give_up_after_hours=0.1 / 3600)
    time.sleep(0.2)
    sender = ResultsSender(database, down)
    sender.drain(timeout=30)
    rows = outbox_rows(database, study_uid)
    assert {row["state"] for row in rows} == {"failed"}
    assert all("gave up" in row["last_error"] for row in rows)
    sender.close()

    config = {"database": {"url": clean_database_url}}
    listing = pacsflow_process(["results-outbox", "list", "--state", "failed"], config)
    assert listing.process is not None and listing.process.wait(60) == 0
    assert f"pending=0 sent=0 failed={len(rows)}" in listing.log
    assert study_uid in listing.log and reports[0].sop_instance_uid in listing.log
    assert "PeerUnavailableError" in listing.log
    for private in (str(image.PatientName), str(image.PatientID), str(image.AccessionNumber)):
        assert private not in listing.log

    retry = pacsflow_process(["results-outbox", "retry"], config)
    assert retry.process is not None and retry.process.wait(60) == 0
    assert f"{len(rows)} delivery(ies) due again now" in retry.log
    up = outbox_settings(settings_factory, clean_orthanc.dicom_port)
    sender = ResultsSender(database, up)
    assert sender.drain() == len(rows)
    assert {row["state"] for row in outbox_rows(database, study_uid)} == {"sent"}
    stored = {
        i["MainDicomTags"]["SOPInstanceUID"] for i in clean_orthanc.client.instances_of(study_uid)
    }
    assert {item.sop_instance_uid for item in reports + overlays} <= stored
    listing = pacsflow_process(["results-outbox", "list", "--study", study_uid], config)
    assert listing.process is not None and listing.process.wait(60) == 0
    assert listing.log.count("stored_at=") == len(rows)
    sender.close()
    database.close()


def test_late_delivery_alerts_the_operators_once_through_the_escalation_channels(
    settings_factory, tmp_path, notify_http, notify_smtp, monkeypatch
):
    monkeypatch.setenv("PACSFLOW_ESCALATION__WEBHOOK_SECRET", WEBHOOK_SECRET)
    escalation = {
        "people": {"ops1": {"name": "Ops On Call", "email": "ops1@hospital.test"}},
        "teams": {
            "pacs-admin": {
                "channels": ["webhook", "email", "hl7"],
                "delivery": "all",
                "on_call": [{"person": "ops1"}],
                "webhook_url": notify_http.url("/hooks/ops"),
            }
        },
        "use_default_rules": False,
        "smtp_host": notify_smtp.host,
        "smtp_port": notify_smtp.port,
        "retry_delays_seconds": [0.05],
        "send_timeout_seconds": 2.0,
    }
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE},
        pacs={"ae_title": PACS_AE_TITLE, "port": free_port(), "timeout_seconds": 2},
        results={
            "retry_delays_seconds": [0.2],
            "alert_after_minutes": 1 / 60,  # one second
            "alert_team": "pacs-admin",
        },
        escalation=escalation,
    )
    database = open_database(settings)
    image, reports, overlays = built_results(tmp_path)
    study_uid = add_study(database, image)
    enqueue(database, study_uid, reports, overlays)
    sender = ResultsSender(database, settings, alert_check_seconds=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=sender.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        (hook,) = notify_http.wait_for("/hooks/ops", timeout=20)
        (mail,) = notify_smtp.wait_for("ops1@hospital.test", timeout=20)
        # results of another study queued later in the same outage: told once, on their own
        later_image, later_reports, later_overlays = built_results(tmp_path, "cxr-later")
        later_uid = add_study(database, later_image)
        enqueue(database, later_uid, later_reports, later_overlays)
        hooks = notify_http.wait_for("/hooks/ops", count=2, timeout=20)
        time.sleep(1.5)  # more checks pass: no row is alerted again
    finally:
        stop.set()
        thread.join(15)
    body = hook.json()
    assert body["type"] == "pacsflow.operational_alert"
    assert body["facts"]["alert"] == "results_delivery_late"
    assert body["facts"]["objects"] == 1 + len(overlays)
    assert body["facts"]["studies"] == [study_uid]
    assert "not delivered" in mail.subject
    for text in (hook.body.decode(), mail.body):
        assert str(image.PatientName) not in text and str(image.PatientID) not in text
    assert hooks[1].json()["facts"]["studies"] == [later_uid]
    assert len(notify_http.received("/hooks/ops")) == 2
    assert len(notify_smtp.received("ops1@hospital.test")) == 2
    rows = outbox_rows(database)
    assert all(row["late_alert_at"] is not None and row["state"] == "pending" for row in rows)
    with database.connection() as conn:  # never the EMR inbox
        assert conn.execute("SELECT count(*) AS n FROM hl7_outbox").fetchone()["n"] == 0
    database.close()


@pytest.fixture
def silent_peer():
    """A TCP peer that accepts connections and never says a word (a hung PACS)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for connection in accepted:
        connection.close()
    server.close()


def test_prior_search_on_a_hung_pacs_gives_no_prior_within_the_short_timeout(silent_peer):
    settings = PriorsSettings(timeout_seconds=1.0)
    client = DicomClient(
        Peer(
            ae_title=PACS_AE_TITLE,
            host="127.0.0.1",
            port=silent_peer,
            calling_ae_title=NODE_AE_TITLE,
            timeout_seconds=30.0,  # the DIMSE timeout of the PACS is not what the run waits
            connect_timeout_seconds=settings.timeout_seconds,
        )
    )
    current = CurrentStudy(
        study_instance_uid="1.2.3.4",
        patient_id="PAT-HUNG",
        study_date=None,
        modality="DX",
        body_part="CHEST",
    )
    started = time.monotonic()
    search = search_priors(client, current, settings)
    elapsed = time.monotonic() - started
    assert search.prior is None and "did not answer" in search.reason
    assert elapsed < 3 * settings.timeout_seconds


def test_an_sr_replaced_while_it_waited_for_the_pacs_never_reaches_it(
    settings_factory, clean_orthanc, tmp_path
):
    """PACS down, the study rerun with changed inputs: the old SR (old UID) was superseded by
    the new build before it could be sent. Only the new one may reach the PACS."""
    settings = outbox_settings(settings_factory, clean_orthanc.dicom_port)
    database = open_database(settings)
    image, reports, _ = built_results(tmp_path, "cxr-old")
    _, newer, _ = built_results(tmp_path, "cxr-new")
    study_uid = add_study(database, image)
    with database.connection() as conn:
        for item, status in ((reports[0], "superseded"), (newer[0], "final")):
            conn.execute(
                "INSERT INTO result_objects (sop_instance_uid, study_instance_uid,"
                " series_instance_uid, sop_class_uid, kind, analyzer, model_version, generation,"
                " path, status) VALUES (%s, %s, '1.2.3', %s, 'sr', 'chest-xray', 'v', 1, %s, %s)",
                (item.sop_instance_uid, study_uid, item.sop_class_uid, item.path, status),
            )
    before = last_change(clean_orthanc)
    enqueue(database, study_uid, reports, [])
    enqueue(database, study_uid, newer, [])
    sender = ResultsSender(database, settings)
    sender.drain()
    arrived = [change["sop_instance_uid"] for change in new_instances(clean_orthanc, before)]
    assert arrived == [newer[0].sop_instance_uid]
    states = {row["sop_instance_uid"]: row["state"] for row in outbox_rows(database, study_uid)}
    assert states == {reports[0].sop_instance_uid: "superseded", newer[0].sop_instance_uid: "sent"}
    sender.close()
    database.close()
