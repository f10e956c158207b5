"""The ADT listener against a real PostgreSQL, driven over real MLLP connections."""

from __future__ import annotations

import threading

import psycopg
import pytest
from prometheus_client import REGISTRY

from tests.emr_samples import adt, segments_of
from tests.fix_hl7 import wait_until
from tests.integration.emr.helpers import AdtSender, msa, running_listener


def inbox(database) -> list[dict]:
    with database.connection() as conn:
        return conn.execute("SELECT * FROM hl7_inbox ORDER BY id").fetchall()


def test_admit_transfer_discharge_updates_the_context(settings_factory) -> None:
    with running_listener(settings_factory()) as site:
        sender = site.sender()
        assert msa(sender.send(adt("A01", "M1", ward="WARD-A")))[:2] == ("AA", "M1")
        assert site.patients.context("HOSP|12345").location.point_of_care == "WARD-A"
        assert msa(sender.send(adt("A02", "M2", ward="ICU")))[0] == "AA"
        context = site.patients.context("HOSP|12345")
        assert (context.location.point_of_care, context.prior_location.point_of_care) == (
            "ICU",
            "WARD-A",
        )
        assert msa(sender.send(adt("A03", "M3", ward="ICU")))[0] == "AA"
        context = site.patients.context("HOSP|12345")
        assert context.visit_status == "discharged" and context.location.is_empty
        assert context.revision == 3
        sender.close()
        assert [row["state"] for row in inbox(site.database)] == ["applied"] * 3


def test_duplicate_control_id_is_acknowledged_but_applied_once(settings_factory) -> None:
    with running_listener(settings_factory()) as site:
        sender = site.sender()
        assert msa(sender.send(adt("A01", "DUP-1", ward="WARD-A")))[0] == "AA"
        # The same control ID again, even with other content, changes nothing.
        assert msa(sender.send(adt("A01", "DUP-1", ward="WARD-Z")))[:2] == ("AA", "DUP-1")
        context = site.patients.context("HOSP|12345")
        assert context.location.point_of_care == "WARD-A" and context.revision == 1
        # Another sending system may use the same control ID.
        other = adt("A02", "DUP-1", ward="ICU").replace("|ADTSYS|HOSP|", "|OTHERSYS|HOSP|")
        assert msa(sender.send(other))[0] == "AA"
        assert site.patients.context("HOSP|12345").location.point_of_care == "ICU"
        assert [row["state"] for row in inbox(site.database)] == ["applied", "duplicate", "applied"]


@pytest.mark.parametrize(
    "message, encoding, reason",
    [
        (
            adt("A01", "BAD-SEG", extra_segments=("XX1|junk",)),
            "utf-8",
            "'XX1' is not a v2.5.1 segment",
        ),
        (adt("A01", "BAD-VER", version="2.2"), "utf-8", "version 2.2 is not accepted"),
        (
            adt("A01", "BAD-LAT", charset="UNICODE UTF-8", name="MÜLLER^JÜRGEN"),
            "latin-1",
            "is not valid UNICODE UTF-8",
        ),
        (
            adt("A01", "BAD-UTF", charset="8859/1", name="MÜLLER^JÜRGEN"),
            "utf-8",
            "the bytes are UTF-8 but MSH-18 declares 8859/1",
        ),
        (
            adt("A01", "BAD-DOB").replace("|19610415|", "|1961-04-15|"),
            "utf-8",
            "PID-7 '1961-04-15'",
        ),
    ],
)
def test_malformed_messages_get_ae_and_the_listener_keeps_going(
    settings_factory, message, encoding, reason
) -> None:
    with running_listener(settings_factory()) as site:
        sender = site.sender()
        raw = message if isinstance(message, bytes) else message.encode(encoding)
        ack = sender.send(raw)
        code, control_id, text = msa(ack)
        assert code == "AE"
        assert control_id.startswith("BAD-")
        assert reason in text
        # Same connection, next message: applied.
        assert msa(sender.send(adt("A01", "GOOD-1")))[0] == "AA"
        sender.close()
        rows = inbox(site.database)
        assert [row["state"] for row in rows] == ["rejected", "applied"]
        assert rows[0]["ack_code"] == "AE" and rows[0]["error"]
        assert bytes(rows[0]["raw"]) == raw  # stored as received


@pytest.mark.parametrize(
    "charset, encoding, family",
    [
        ("8859/1", "latin-1", "MÜLLER-ÅSTRÖM"),
        ("UNICODE UTF-8", "utf-8", "ŁUKASZ-ŻÓŁW-田中"),
        ("", "utf-8", "NØRGÅRD"),
    ],
)
def test_non_ascii_names_arrive_intact(settings_factory, charset, encoding, family) -> None:
    with running_listener(settings_factory()) as site:
        sender = site.sender()
        assert (
            msa(sender.send(adt("A01", "N1", charset=charset, name=f"{family}^ÉLODIE"), encoding))[
                0
            ]
            == "AA"
        )
        name = site.patients.context("HOSP|12345").name
        assert (name.family, name.given) == (family, "ÉLODIE")


def test_other_adt_events_are_stored_and_acknowledged_not_applied(settings_factory) -> None:
    with running_listener(settings_factory()) as site:
        sender = site.sender()
        assert msa(sender.send(adt("A31", "UPD-1", structure="ADT_A05")))[0] == "AA"
        assert site.patients.context("HOSP|12345") is None
        assert [row["state"] for row in inbox(site.database)] == ["ignored"]


def test_enhanced_mode_answers_commit_acks(settings_factory) -> None:
    with running_listener(settings_factory()) as site:
        sender = site.sender()
        enhanced = adt("A01", "ENH-1").replace("|P|2.5.1|||", "|P|2.5.1|||AL|NE")
        assert msa(sender.send(enhanced))[0] == "CA"
        bad = adt("A01", "ENH-2", version="2.2").replace("|P|2.2|||", "|P|2.2|||AL|NE")
        assert msa(sender.send(bad))[0] == "CE"


def test_ack_is_valid_hl7_for_the_sender(settings_factory) -> None:
    with running_listener(settings_factory(hl7={"sending_application": "PACSFLOW-ADT"})) as site:
        ack = site.sender().send(adt("A01", "V-1", version="2.4"))
        msh = segments_of(ack)[0]
        assert (msh.value(3), msh.value(5), msh.value(12)) == ("PACSFLOW-ADT", "ADTSYS", "2.4")
        assert msh.raw(9) == "ACK^A01^ACK"


def test_concurrent_connections_about_one_patient_are_serialised(settings_factory) -> None:
    with running_listener(settings_factory()) as site:
        errors: list[str] = []

        def feed(prefix: str) -> None:
            sender = site.sender()
            for index in range(25):
                code = msa(sender.send(adt("A08", f"{prefix}-{index}", ward=f"{prefix}{index}")))[0]
                if code != "AA":
                    errors.append(code)
            sender.close()

        threads = [threading.Thread(target=feed, args=(name,)) for name in "ABCD"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert site.patients.context("HOSP|12345").revision == 100


def test_database_down_means_ar_and_nothing_acknowledged_is_lost(
    settings_factory, restartable_postgres
) -> None:
    settings = settings_factory(database={"url": restartable_postgres.url, "pool_size": 2})
    with running_listener(settings) as site:
        sender = site.sender()
        assert msa(sender.send(adt("A01", "DB-1", ward="WARD-A")))[0] == "AA"
        restartable_postgres.stop()
        code, control_id, text = msa(sender.send(adt("A02", "DB-2", ward="ICU")))
        assert (code, control_id) == ("AR", "DB-2") and "could not be stored" in text
        restartable_postgres.start()
        # The sender resends after AR, as HL7 senders do; the pool reconnects.
        wait_until(
            lambda: msa(sender.send(adt("A02", "DB-2", ward="ICU")))[0] == "AA",
            30,
            "AA after restart",
        )
        sender.close()
    with psycopg.connect(restartable_postgres.url) as conn:
        states = conn.execute(
            "SELECT message_control_id, state FROM hl7_inbox ORDER BY id"
        ).fetchall()
        ward = conn.execute("SELECT ward FROM patient_context").fetchone()
    assert [row for row in states if row[1] == "applied"] == [
        ("DB-1", "applied"),
        ("DB-2", "applied"),
    ]
    assert ward == ("ICU",)


def test_listener_command_runs_as_a_process(
    settings_factory, pacsflow_process, clean_database_url
) -> None:
    from deployments.orthanc import free_port

    port = free_port()
    process = pacsflow_process(
        ["hl7-listener"],
        {
            "database": {"url": clean_database_url},
            "hl7": {"port": port, "accepted_versions": ["2.5.1"]},
        },
    )
    sender = wait_until(lambda: _connect(port), 30, "the hl7-listener process to listen")
    assert msa(sender.send(adt("A01", "P-1")))[0] == "AA"
    assert msa(sender.send(adt("A01", "P-2", version="2.4")))[0] == "AE"
    sender.close()
    assert process.stop() == 0, process.log


def _connect(port: int) -> AdtSender | None:
    try:
        return AdtSender(port)
    except OSError:
        return None


ALLOWED_ADT = [{"application": "ADTSYS", "facility": "HOSP", "host": "127.0.0.1"}]


def test_only_allowed_senders_are_applied(settings_factory, caplog) -> None:
    settings = settings_factory(hl7={"allowed_senders": ALLOWED_ADT})
    refused_before = REGISTRY.get_sample_value("pacsflow_hl7_messages_refused_total") or 0
    with running_listener(settings) as site:
        sender = site.sender()
        assert msa(sender.send(adt("A01", "OK-1", ward="WARD-A")))[:2] == ("AA", "OK-1")
        # another system: AR, nothing stored, nothing applied, even a merge
        stranger = adt("A02", "EVIL-1", ward="ICU").replace("|ADTSYS|HOSP|", "|ROGUE|HOSP|")
        merge = adt("A40", "EVIL-2", mrn="12345", prior_mrn="999").replace(
            "|ADTSYS|HOSP|", "|ADTSYS|ELSEWHERE|"
        )
        with caplog.at_level("WARNING", logger="integrations.hl7.listener"):
            code, control_id, reason = msa(sender.send(stranger))
            assert (code, control_id) == ("AR", "EVIL-1") and "sender not allowed" in reason
            assert msa(sender.send(merge))[:2] == ("AR", "EVIL-2")
        sender.close()
        assert site.patients.context("HOSP|12345").location.point_of_care == "WARD-A"
        assert [row["message_control_id"] for row in inbox(site.database)] == ["OK-1"]
        refusals = [r.getMessage() for r in caplog.records if "allowed_senders" in r.getMessage()]
        assert len(refusals) == 2 and "ROGUE" in refusals[0] and "EVIL-1" in refusals[0]
        for line in refusals:  # no patient data in the log
            assert "12345" not in line and "MÜLLER" not in line and "19610415" not in line
        # and counted for /metrics
        refused = REGISTRY.get_sample_value("pacsflow_hl7_messages_refused_total")
        assert refused == refused_before + 2


def test_a_known_sender_from_an_unknown_address_is_refused(settings_factory) -> None:
    allowed = [{"application": "ADTSYS", "host": "10.20.30.40"}]
    with running_listener(settings_factory(hl7={"allowed_senders": allowed})) as site:
        sender = site.sender()
        assert msa(sender.send(adt("A01", "ADDR-1")))[0] == "AR"
        sender.close()
        assert inbox(site.database) == []
