"""An EMR interface engine that misbehaves, as a real MLLP peer process: a framed answer that
is no ACK, an AA for another message, no answer at all, a dropped connection, AE; and an EMR
down for longer than ``[emr] alert_after_minutes``.

Each message is retried under the same MSH-10 until the EMR's AA, and a queue that ages past
the limit is told to the operators once, not once per retry. (AA, AE, AR, no answer and EMR
outages are also covered in ``tests/integration/emr/test_hl7_delivery.py``; FHIR token and
server failures in ``tests/integration/emr/test_fhir_delivery.py``; the directory down at
login in ``tests/integration/console/test_console.py``.)"""

from __future__ import annotations

import logging
import time

from integrations.db.connection import open_database
from integrations.hl7.sender import Hl7Sender
from tests.fix_hl7 import wait_until
from tests.fix_notify import ops_team_escalation
from tests.integration.emr.helpers import fast_emr, running_sender
from tests.integration.emr.test_hl7_delivery import outbox_rows, queue_result

WEBHOOK_SECRET = "test-secret-for-the-signed-webhook"


def test_every_kind_of_bad_answer_is_retried_under_the_same_control_id(
    settings_factory, make_mllp_peer
):
    peer = make_mllp_peer()
    settings = settings_factory(emr=fast_emr(peer.port, retry_delays_seconds=[0.1]))
    database = open_database(settings)
    queued = queue_result(database, settings, 11)
    answers = ["garbage", "wrong-id", "none", "close", "AE"]
    peer.answers(by_control_id={queued.message_control_id: list(answers)})
    with running_sender(Hl7Sender(database, settings)):
        received = peer.wait_for(len(answers) + 1, timeout=60)
        wait_until(lambda: outbox_rows(database)[0]["state"] == "sent", 20, "sent")
    row = outbox_rows(database)[0]
    database.close()
    assert [record["answer"] for record in received] == [*answers, "AA"]
    assert {record["control_id"] for record in received} == {queued.message_control_id}
    assert len({record["text"].split("\r", 1)[1] for record in received}) == 1  # same content
    assert row["attempts"] == len(answers) + 1 and row["ack_code"] == "AA"


def test_an_emr_down_past_the_limit_is_told_to_the_operators_once(
    settings_factory, make_mllp_peer, notify_http, monkeypatch, caplog
):
    caplog.set_level(logging.WARNING)
    monkeypatch.setenv("PACSFLOW_ESCALATION__WEBHOOK_SECRET", WEBHOOK_SECRET)
    peer = make_mllp_peer(start=False)  # the EMR is down
    settings = settings_factory(
        emr=fast_emr(peer.port, alert_after_minutes=1 / 60, alert_team="pacs-admin"),
        escalation=ops_team_escalation(notify_http.url("/hooks/ops")),
    )
    database = open_database(settings)
    queue_result(database, settings, 21)
    queue_result(database, settings, 22, patient_id="0099999")
    with running_sender(Hl7Sender(database, settings)):
        (hook,) = notify_http.wait_for("/hooks/ops", timeout=30)
        time.sleep(3.0)  # many retries later: still one alert
        assert len(notify_http.received("/hooks/ops")) == 1
        peer.start()
        wait_until(
            lambda: {row["state"] for row in outbox_rows(database)} == {"sent"}, 30, "caught up"
        )
    database.close()
    facts = hook.json()["facts"]
    assert facts["alert"] == "outbox_queue_age" and facts["waiting"] == 2
    assert facts["oldest_seconds"] >= 1
    alerts = [r for r in caplog.records if r.getMessage().startswith("ALERT")]
    assert len(alerts) == 1, [r.getMessage() for r in alerts]
