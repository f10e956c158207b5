"""ORU delivery over MLLP to a real receiver process: ward, merge, outages, ACK codes, order."""

from __future__ import annotations

import itertools
import time
from dataclasses import replace

import pytest

from integrations.db.connection import open_database
from integrations.db.outbox import OutboxStore
from integrations.emr.enqueue import enqueue_result
from integrations.hl7.oru import NO_CLINICAL_CONTEXT
from integrations.hl7.sender import Hl7Sender
from tests.emr_samples import adt, result_document, segments_of, study_facts
from tests.fix_hl7 import wait_until
from tests.integration.emr.helpers import (
    fast_emr,
    insert_study,
    msa,
    running_listener,
    running_sender,
)

UID = "1.2.826.0.1.3680043.8.498.{}"


def oru(record: dict) -> dict[str, list]:
    found: dict[str, list] = {}
    for segment in segments_of(record["text"]):
        found.setdefault(segment.name, []).append(segment)
    return found


def queue_result(database, settings, study_number: int, patient_id: str = "0012345", **kwargs):
    uid = UID.format(study_number)
    insert_study(database, uid, patient_id)
    document = result_document(
        study=study_facts(study_instance_uid=uid, patient_id=patient_id), **kwargs
    )
    return enqueue_result(database, settings, document)


def outbox_rows(database) -> list[dict]:
    with database.connection() as conn:
        return conn.execute("SELECT * FROM hl7_outbox ORDER BY id").fetchall()


def test_admit_transfer_discharge_updates_the_ward_in_the_next_oru(
    settings_factory, make_mllp_peer
) -> None:
    peer = make_mllp_peer()
    settings = settings_factory(emr=fast_emr(peer.port))
    with running_listener(settings) as site:
        sender = Hl7Sender(site.database, settings)
        adt_sender = site.sender()
        expected = []
        for number, (event, ward) in enumerate(
            [("A01", "WARD-A"), ("A02", "ICU"), ("A03", "ICU")], start=1
        ):
            assert (
                msa(
                    adt_sender.send(
                        adt(event, f"ADT-{number}", ward=ward, when=f"2026030{number}080000")
                    )
                )[0]
                == "AA"
            )
            queue_result(site.database, settings, number)
            assert sender.drain() == 1
            expected.append(event)
        sender.close()
        received = peer.wait_for(3)
        contexts = [row["clinical_context"] for row in outbox_rows(site.database)]
    assert contexts == ["adt"] * 3
    assert [record["validation"] for record in received] == ["ok"] * 3
    admitted, transferred, discharged = (oru(record) for record in received)
    assert admitted["PV1"][0].first(3).component(1) == "WARD-A"
    assert admitted["PV1"][0].value(44) == "20260301080000"
    assert transferred["PV1"][0].first(3).component(1) == "ICU"
    assert transferred["PV1"][0].first(6).component(1) == "WARD-A"
    assert discharged["PV1"][0].value(3) == ""
    assert discharged["PV1"][0].first(6).component(1) == "ICU"
    assert discharged["PV1"][0].value(45) == "20260303080000"
    for message in (admitted, transferred, discharged):
        assert message["PID"][0].first(3).component(1) == "12345"  # ADT's MRN for DICOM "0012345"
        assert NO_CLINICAL_CONTEXT not in [note.value(3) for note in message["NTE"]]


def test_result_without_context_is_flagged_or_enriched_by_a_late_adt(
    settings_factory, make_mllp_peer
) -> None:
    peer = make_mllp_peer(start=False)
    settings = settings_factory(emr=fast_emr(peer.port))
    with running_listener(settings) as site:
        sender = Hl7Sender(site.database, settings)
        with running_sender(sender):
            queue_result(site.database, settings, 1)
            # The EMR is down; meanwhile the patient's admission arrives.
            wait_until(
                lambda: outbox_rows(site.database)[0]["attempts"] >= 2, 10, "a failed attempt"
            )
            assert msa(site.sender().send(adt("A01", "LATE-1", ward="WARD-L")))[0] == "AA"
            peer.start()
            first = oru(peer.wait_for(1)[0])
            # A patient ADT never mentions: sent at once, flagged.
            queue_result(site.database, settings, 2, patient_id="777")
            second = oru(peer.wait_for(2)[1])
            wait_until(
                lambda: all(r["state"] == "sent" for r in outbox_rows(site.database)), 10, "sent"
            )
            contexts = [row["clinical_context"] for row in outbox_rows(site.database)]
    assert contexts == ["adt", "none"]
    assert first["PV1"][0].first(3).component(1) == "WARD-L"
    assert NO_CLINICAL_CONTEXT not in [note.value(3) for note in first["NTE"]]
    assert second["PID"][0].first(3).component(1) == "777"
    assert NO_CLINICAL_CONTEXT in [note.value(3) for note in second["NTE"]]


def test_context_wait_holds_a_result_until_its_adt_arrives(
    settings_factory, make_mllp_peer
) -> None:
    peer = make_mllp_peer()
    settings = settings_factory(emr=fast_emr(peer.port, context_wait_seconds=60.0))
    with running_listener(settings) as site, running_sender(Hl7Sender(site.database, settings)):
        queue_result(site.database, settings, 1)
        time.sleep(1.5)
        assert peer.received() == []  # held, not sent without context
        admitted = time.monotonic()
        assert msa(site.sender().send(adt("A01", "W-1", ward="WARD-W")))[0] == "AA"
        held = oru(peer.wait_for(1, timeout=10)[0])
        waited = time.monotonic() - admitted
        attempts = outbox_rows(site.database)[0]["attempts"]
    assert held["PV1"][0].first(3).component(1) == "WARD-W"
    assert waited < 5  # released by the ADT, not by the 60 s wait
    assert attempts == 1


def test_merge_moves_results_to_the_surviving_mrn(settings_factory, make_mllp_peer) -> None:
    peer = make_mllp_peer(start=False)
    settings = settings_factory(emr=fast_emr(peer.port))
    with running_listener(settings) as site:
        adt_sender = site.sender()
        # A temporary MRN 55555 (emergency registration), then the real one 12345.
        assert msa(adt_sender.send(adt("A01", "T-1", mrn="55555", ward="ER")))[0] == "AA"
        queued = queue_result(site.database, settings, 1, patient_id="0055555")
        assert queued.patient_key == "HOSP|55555"
        assert (
            msa(adt_sender.send(adt("A40", "MERGE-1", mrn="12345", prior_mrn="55555")))[0] == "AA"
        )
        rows = outbox_rows(site.database)
        assert [row["patient_key"] for row in rows] == ["HOSP|12345"]
        with site.database.connection() as conn:
            worklist = conn.execute("SELECT patient_id FROM worklist").fetchone()
            merge = conn.execute("SELECT * FROM patient_merges").fetchone()
        assert worklist["patient_id"] == "12345"
        assert (merge["prior_patient_key"], merge["studies_moved"], merge["messages_moved"]) == (
            "HOSP|55555",
            1,
            1,
        )
        # A later result for a study stored under the old MRN goes to the survivor too.
        assert (
            queue_result(site.database, settings, 2, patient_id="55555").patient_key == "HOSP|12345"
        )
        survivor = site.patients.resolve("HOSP|55555")
        assert survivor is not None and survivor.patient_key == "HOSP|12345"
        assert survivor.context.location.point_of_care == "ER"  # the visit followed the merge
        peer.start()
        sender = Hl7Sender(site.database, settings)
        assert sender.drain() == 2
        sender.close()
    for record in peer.wait_for(2):
        assert oru(record)["PID"][0].first(3).component(1) == "12345"
        assert record["validation"] == "ok"


@pytest.mark.parametrize(
    "outage_seconds",
    [
        pytest.param(3.0, id="3s"),
        pytest.param(60.0, id="whole-first-minute", marks=pytest.mark.slow),
    ],
)
def test_peer_down_then_up_delivers_every_message_once_in_order(
    settings_factory, make_mllp_peer, outage_seconds
) -> None:
    peer = make_mllp_peer(start=False)
    delays = [0.2, 0.4, 0.8, 1.0] if outage_seconds < 10 else [1.0, 2.0, 5.0, 10.0]
    settings = settings_factory(emr=fast_emr(peer.port, retry_delays_seconds=delays))
    database = open_database(settings)
    patients = ["1001", "1002", "1003", "1004"]
    expected: dict[str, list[str]] = {patient: [] for patient in patients}
    for number in range(20):
        patient = patients[number % 4]
        queued = queue_result(
            database, settings, number + 1, patient_id=patient, critical=number % 3 == 0
        )
        expected[patient].append(queued.message_control_id)
    started = time.monotonic()
    with running_sender(Hl7Sender(database, settings)):
        time.sleep(outage_seconds)
        attempts_during_outage = max(row["attempts"] for row in outbox_rows(database))
        assert all(row["state"] == "pending" for row in outbox_rows(database))
        peer.start()
        wait_until(
            lambda: all(row["state"] == "sent" for row in outbox_rows(database)),
            60,
            "every message sent",
        )
    received = peer.received()
    database.close()
    assert attempts_during_outage >= 3  # the outage was real: connections were refused
    assert time.monotonic() - started >= outage_seconds
    control_ids = [record["control_id"] for record in received]
    assert sorted(control_ids) == sorted(
        cid for ids in expected.values() for cid in ids
    )  # each exactly once
    for patient, ids in expected.items():
        assert [cid for cid in control_ids if cid in ids] == ids, f"order for patient {patient}"
    assert all(record["validation"] == "ok" for record in received)


def test_ar_fails_the_message_visibly_and_does_not_block_the_patient(
    settings_factory, make_mllp_peer, pacsflow_process, clean_database_url
) -> None:
    peer = make_mllp_peer()
    settings = settings_factory(emr=fast_emr(peer.port))
    database = open_database(settings)
    rejected = queue_result(database, settings, 1)
    accepted = queue_result(database, settings, 2)
    peer.answers(by_control_id={rejected.message_control_id: ["AR"]})
    sender = Hl7Sender(database, settings)
    assert sender.drain() == 2
    rows = {row["message_control_id"]: row for row in outbox_rows(database)}
    assert rows[rejected.message_control_id]["state"] == "failed"
    assert rows[rejected.message_control_id]["ack_code"] == "AR"
    assert "simulated rejection" in rows[rejected.message_control_id]["last_error"]
    assert rows[accepted.message_control_id]["state"] == "sent"
    # Visible to operators, and re-queued by them once the EMR side is fixed.
    listing = pacsflow_process(
        ["emr-outbox", "list", "--state", "failed"], {"database": {"url": clean_database_url}}
    )
    assert listing.process is not None and listing.process.wait(60) == 0
    assert rejected.message_control_id in listing.log and "simulated rejection" in listing.log
    retry = pacsflow_process(["emr-outbox", "retry"], {"database": {"url": clean_database_url}})
    assert retry.process is not None and retry.process.wait(60) == 0 and "1 message(s)" in retry.log
    assert sender.drain() == 1
    sender.close()
    database.close()
    assert {row["state"] for row in outbox_rows(open_database(settings))} == {"sent"}
    answers = [(r["control_id"], r["answer"]) for r in peer.received()]
    assert answers == [
        (rejected.message_control_id, "AR"),
        (accepted.message_control_id, "AA"),
        (rejected.message_control_id, "AA"),
    ]


def test_ae_is_retried_with_backoff(settings_factory, make_mllp_peer) -> None:
    peer = make_mllp_peer()
    settings = settings_factory(emr=fast_emr(peer.port, retry_delays_seconds=[0.5, 1.0]))
    database = open_database(settings)
    queued = queue_result(database, settings, 1)
    peer.answers(by_control_id={queued.message_control_id: ["AE", "AE"]})
    with running_sender(Hl7Sender(database, settings)):
        received = peer.wait_for(3, timeout=20)
        wait_until(lambda: outbox_rows(database)[0]["state"] == "sent", 10, "sent")
    row = outbox_rows(database)[0]
    database.close()
    assert [record["answer"] for record in received] == ["AE", "AE", "AA"]
    assert {record["control_id"] for record in received} == {queued.message_control_id}
    assert row["attempts"] == 3 and row["ack_code"] == "AA"
    gaps = [later["at"] - earlier["at"] for earlier, later in itertools.pairwise(received)]
    assert gaps[0] >= 0.5 and gaps[1] >= 1.0


def test_ae_gives_up_after_the_configured_attempts(settings_factory, make_mllp_peer) -> None:
    peer = make_mllp_peer()
    peer.answers(default="AE")
    settings = settings_factory(
        emr=fast_emr(peer.port, ae_max_attempts=2, retry_delays_seconds=[0.1])
    )
    database = open_database(settings)
    queue_result(database, settings, 1)
    with running_sender(Hl7Sender(database, settings)):
        wait_until(lambda: outbox_rows(database)[0]["state"] == "failed", 10, "failed")
    row = outbox_rows(database)[0]
    database.close()
    assert row["attempts"] == 2 and "after 2 attempts" in row["last_error"]


def test_no_answer_times_out_and_is_retried_behind_which_the_patient_waits(
    settings_factory, make_mllp_peer
) -> None:
    peer = make_mllp_peer()
    settings = settings_factory(emr=fast_emr(peer.port, ack_timeout_seconds=1.0))
    database = open_database(settings)
    silent = queue_result(database, settings, 1)
    after = queue_result(database, settings, 2)
    peer.answers(by_control_id={silent.message_control_id: ["none"]})
    with running_sender(Hl7Sender(database, settings)):
        wait_until(
            lambda: all(r["state"] == "sent" for r in outbox_rows(database)), 20, "both sent"
        )
    rows = {row["message_control_id"]: row for row in outbox_rows(database)}
    database.close()
    received = [(r["control_id"], r["answer"]) for r in peer.received()]
    # The unanswered message went again with the same control ID; the next one waited.
    assert received == [
        (silent.message_control_id, "none"),
        (silent.message_control_id, "AA"),
        (after.message_control_id, "AA"),
    ]
    assert rows[silent.message_control_id]["attempts"] == 2
    assert (
        "no ACK" in (rows[silent.message_control_id]["last_error"] or "")
        or rows[silent.message_control_id]["last_error"] is None
    )
    # Resent bytes are identical: the peer saw the same message twice.
    texts = [r["text"] for r in peer.received() if r["control_id"] == silent.message_control_id]
    assert texts[0] == texts[1]


def test_higher_priority_first_but_never_ahead_of_the_same_patients_earlier_messages(
    settings_factory, make_mllp_peer
) -> None:
    peer = make_mllp_peer()
    settings = settings_factory(emr=fast_emr(peer.port))
    database = open_database(settings)
    outbox = OutboxStore(database)
    plan = [
        ("A1", "A", 0),
        ("A2", "A", 0),
        ("C1", "C", 0),
        ("A3", "A", 0),
        ("B1", "B", 5),
        ("C2", "C", 5),
    ]
    for name, patient, priority in plan:
        payload = (
            f"MSH|^~\\&|PACSFLOW|PACSFLOW|EMR|HOSPITAL|20260301||ORU^R01^ORU_R01|{name}|P|2.5.1\r"
            f"PID|1||{patient}^^^HOSP^MR||DOE^{patient}\r"
        )
        assert outbox.enqueue(
            message_control_id=name,
            message_type="ORU^R01",
            payload=payload,
            study_instance_uid=None,
            patient_key=f"HOSP|{patient}",
            priority=priority,
        )
    assert not outbox.enqueue(
        message_control_id="A1",
        message_type="ORU^R01",
        payload="x",
        study_instance_uid=None,
        patient_key="HOSP|A",
    )
    sender = Hl7Sender(database, settings)
    assert sender.drain() == 6
    sender.close()
    database.close()
    # C's queue holds a high-priority message, so C1 (its head) goes first; B1 next; A last.
    assert [record["control_id"] for record in peer.received()] == [
        "C1",
        "B1",
        "C2",
        "A1",
        "A2",
        "A3",
    ]


def test_sender_process_killed_mid_stream_loses_nothing(
    settings_factory, make_mllp_peer, pacsflow_process, clean_database_url
) -> None:
    peer = make_mllp_peer(validate=False)
    peer.answers(delay_seconds=0.1)
    emr = fast_emr(peer.port)
    settings = settings_factory(emr=emr)
    database = open_database(settings)
    ids = [
        queue_result(database, settings, n + 1, patient_id=str(2000 + n % 3)).message_control_id
        for n in range(30)
    ]
    sections = {"database": {"url": clean_database_url}, "emr": emr}
    first = pacsflow_process(["emr-sender", "--only", "hl7"], sections)
    peer.wait_for(8)
    first.kill()
    assert len({r["control_id"] for r in peer.received()}) < 30
    second = pacsflow_process(["emr-sender", "--only", "hl7"], sections)
    wait_until(
        lambda: all(r["state"] == "sent" for r in outbox_rows(database)),
        60,
        "all sent after restart",
    )
    assert second.stop() == 0, second.log
    database.close()
    received = [r["control_id"] for r in peer.received()]
    assert set(received) == set(ids)
    # At most the message in flight at the kill went twice (same control ID: the EMR drops it).
    assert len(received) - len(ids) <= 1


def test_database_restart_during_delivery_loses_nothing(
    settings_factory, make_mllp_peer, restartable_postgres
) -> None:
    peer = make_mllp_peer(validate=False)
    peer.answers(delay_seconds=0.05)
    settings = settings_factory(
        emr=fast_emr(peer.port), database={"url": restartable_postgres.url, "pool_size": 3}
    )
    database = open_database(settings)
    ids = [
        queue_result(database, settings, n + 1, patient_id=str(3000 + n % 4)).message_control_id
        for n in range(40)
    ]
    with running_sender(Hl7Sender(database, settings)):
        peer.wait_for(5)
        restartable_postgres.stop()
        time.sleep(2.0)
        restartable_postgres.start()
        wait_until(lambda: _all_sent(database), 60, "all sent after the database restart")
    database.close()
    received = [r["control_id"] for r in peer.received()]
    assert set(received) == set(ids)
    assert len(received) - len(ids) <= 1


def _all_sent(database) -> bool:
    try:
        return all(row["state"] == "sent" for row in outbox_rows(database))
    except Exception:
        return False


def test_a_rerun_of_the_same_result_queues_nothing_new(settings_factory) -> None:
    settings = settings_factory()
    database = open_database(settings)
    first = queue_result(database, settings, 1)
    again = enqueue_result(
        database,
        settings,
        replace(result_document(study=study_facts(study_instance_uid=UID.format(1)))),
    )
    database.close()
    assert first.hl7_queued and not again.hl7_queued
    assert first.message_control_id == again.message_control_id


def test_nothing_is_rendered_for_a_peer_that_is_down(settings_factory, make_mllp_peer) -> None:
    peer = make_mllp_peer(start=False)
    settings = settings_factory(emr=fast_emr(peer.port, retry_delays_seconds=[0.1]))
    database = open_database(settings)
    queue_result(database, settings, 1, patient_id="1001")
    renders: list[str] = []

    class CountingSender(Hl7Sender):
        def render(self, item, resolved):  # type: ignore[no-untyped-def]
            renders.append(item.key)
            return super().render(item, resolved)

    with running_sender(CountingSender(database, settings)):
        wait_until(lambda: outbox_rows(database)[0]["attempts"] >= 3, 60, "three attempts")
        assert renders == []  # each attempt found the port closed before rendering
        assert "cannot connect" in outbox_rows(database)[0]["last_error"]
        peer.start()
        wait_until(lambda: outbox_rows(database)[0]["state"] == "sent", 60, "sent")
    database.close()
    assert len(renders) == 1 and len(peer.received()) == 1
