"""Critical findings reach the right person, on every channel, within 60 s of study close;
acknowledged, re-sent, escalated to the backup, never twice; against real local peers."""

from __future__ import annotations

import logging
import time

import httpx
from hl7apy.parser import parse_message

from integrations.console.sessions import SessionSigner
from integrations.db.escalations import EscalationStore
from integrations.db.outbox import OutboxStore
from integrations.escalation.notification import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)
from integrations.ldap.rbac import Role
from tasks.escalation import escalate
from tests.emr_samples import adt
from tests.integration.emr.helpers import msa, running_listener
from tests.integration.escalation.conftest import (
    CONSOLE_SECRET,
    MONITORING,
    WEBHOOK_SECRET,
    console_login,
)

DEADLINE_SECONDS = 60.0


def seconds_after_close(context, received_at: float) -> float:
    return received_at - context.closed_at.timestamp()


def test_critical_study_notifies_the_right_team_on_each_channel_within_60_seconds(make_site):
    site = make_site()
    context = site.closed_study("tension-1", location="Emergency bay 4")
    analysis = site.analysis(context, [("Tension Pneumothorax", 0.93), ("Effusion", 0.2)])
    assert analysis.tier == "Critical"

    assert escalate.fn(context, [analysis]) == 1

    (hook,) = site.http.wait_for("/hooks/surgery")
    (page,) = site.http.wait_for("/pager")
    (mail,) = site.smtp.wait_for("surg1@hospital.test")
    (sms,) = site.smtp.wait_for("5550001@sms.hospital.test")
    (alert,) = [
        m
        for m in OutboxStore(site.database).messages(context.study_instance_uid)
        if m["message_type"] == "ORU^R01"
    ]
    for received_at in (hook.received_at, page.received_at, mail.received_at, sms.received_at):
        assert 0 <= seconds_after_close(context, received_at) < DEADLINE_SECONDS
    assert 0 <= (alert["created_at"] - context.closed_at).total_seconds() < DEADLINE_SECONDS

    # the webhook: signed, and carries study, ward, finding, confidence, links, token
    assert verify_signature(
        WEBHOOK_SECRET.encode(),
        hook.header(TIMESTAMP_HEADER),
        hook.body,
        hook.header(SIGNATURE_HEADER),
        now=time.time(),
    )
    assert not verify_signature(
        b"another secret",
        hook.header(TIMESTAMP_HEADER),
        hook.body,
        hook.header(SIGNATURE_HEADER),
        now=time.time(),
    )
    body = hook.json()
    assert body["team"]["id"] == "surgery"
    assert [r["id"] for r in body["recipients"]] == ["surg1"]
    assert body["study"]["study_instance_uid"] == context.study_instance_uid
    assert "A-tension-1" not in hook.body.decode()  # no accession in a page by default
    assert body["study"]["link"] == (
        f"https://viewer.hospital.test/?study={context.study_instance_uid}"
    )
    assert body["patient"]["ward"] == "Emergency bay 4"
    assert body["finding"]["label"] == "Tension Pneumothorax"
    assert body["finding"]["confidence"] == 0.93
    assert body["finding"]["rule"] == "default:tension-pneumothorax"
    token = body["acknowledge"]["token"]
    assert body["acknowledge"]["url"] == f"http://127.0.0.1:1/ack/{token}"

    # pager, e-mail and SMS go to the on-call surgeon only, each with a personal ack link
    assert page.json()["recipient"] == "PG-101"
    assert f"/ack/{token}?by=surg1" in page.json()["message"]
    assert len(page.json()["message"]) <= 160
    assert "Tension Pneumothorax" in mail.subject and "Emergency bay 4" in mail.subject
    assert f"/ack/{token}?by=surg1" in mail.body
    assert context.study_instance_uid in mail.body
    assert "93%" in mail.body
    assert len(sms.body.strip()) <= 160 and f"/ack/{token}?by=surg1" in sms.body
    assert site.smtp.received("surg2@hospital.test") == []
    assert site.http.received("/hooks/neurosurgery") == []

    # the HL7 alert to the EMR inbox: high priority, the surgeon in the result copies
    message = parse_message(alert["payload"], find_groups=False)
    segments = {segment.name: segment for segment in message.children}
    assert segments["OBR"].obr_5.value == "S"
    assert segments["OBR"].obr_28.value.startswith("D101^")
    assert segments["TQ1"].tq1_9.value.startswith("S^")
    observations = [segment for segment in message.children if segment.name == "OBX"]
    assert len(observations) == 2 and all(obx.obx_8.value == "AA" for obx in observations)

    (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
    assert record.state == "notified" and record.team == "surgery"
    assert record.first_notification_seconds is not None
    assert 0 <= record.first_notification_seconds < DEADLINE_SECONDS
    assert record.first_notification_late is False
    assert record.first_channel in {"webhook", "pager", "email", "sms", "hl7"}

    # another finding, another team: a hemorrhage goes to neurosurgery only
    head = site.closed_study("ich-1", modality="CT", location="Ward 7")
    ich = site.analysis(head, [("Subdural hemorrhage", 0.81)], analyzer="head-ct")
    assert escalate.fn(head, [ich]) == 1
    (neuro_hook,) = site.http.wait_for("/hooks/neurosurgery")
    (neuro_mail,) = site.smtp.wait_for("neuro1@hospital.test")
    assert neuro_hook.json()["finding"]["label"] == "Subdural hemorrhage"
    assert neuro_hook.json()["finding"]["rule"] == "default:intracranial-hemorrhage"
    assert 0 <= seconds_after_close(head, neuro_mail.received_at) < DEADLINE_SECONDS
    assert len(site.http.received("/hooks/surgery")) == 1


def test_acknowledgement_is_recorded_and_stops_re_escalation(make_site):
    site = make_site(escalation={"ack_timeout_seconds": 1.0})
    service = site.service()
    service.start()
    try:
        base = f"http://127.0.0.1:{service.bound_port}"
        context = site.closed_study("ack-1")
        escalate.fn(context, [site.analysis(context, [("Tension Pneumothorax", 0.9)])])
        (mail,) = site.smtp.wait_for("surg1@hospital.test")
        link = next(line.split()[-1] for line in mail.body.splitlines() if "/ack/" in line)
        path = link.split("127.0.0.1:1", 1)[1]  # the configured base URL is the site's name

        # opening the link (or a mail scanner fetching it) does not acknowledge: it leads to
        # the console's login, with a signed, expiring link to the acknowledge page
        (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
        page = httpx.get(base + path)
        assert page.status_code == 303
        console_link = page.headers["location"]
        assert console_link.startswith(f"{site.settings.console.base_url}/ack/")
        signer = SessionSigner(CONSOLE_SECRET, idle_seconds=60, max_seconds=60)
        assert signer.ack_token(console_link.rsplit("/", 1)[1], 60) == record.ack_token
        assert httpx.post(base + path.split("?")[0], data={"by": "surg1"}).status_code == 303
        (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
        assert record.state == "notified"

        api = f"{base}/api/ack/{record.ack_token}"
        # the logged-in person is recorded, whatever "by" says
        surgeon = console_login("surg1", "Dr Sam Surgeon")
        confirmed = httpx.post(api, json={"by": "Chief Of Radiology"}, cookies=surgeon)
        assert confirmed.status_code == 200 and confirmed.json()["newly_acknowledged"] is True
        (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
        assert record.state == "acknowledged"
        assert record.acknowledged_by == "surg1 (Dr Sam Surgeon)"
        assert (
            record.acknowledged_at is not None and record.acknowledged_at > record.first_notified_at
        )
        time.sleep(3.5)  # three ack timeouts
        assert len(site.smtp.received("surg1@hospital.test")) == 1
        assert site.smtp.received("surg2@hospital.test") == []
        assert len(site.http.received("/hooks/surgery")) == 1
        again = httpx.post(api, json={}, cookies=console_login("surg2", "Dr Bea Backup"))
        assert again.json()["newly_acknowledged"] is False
        (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
        assert record.acknowledged_by == "surg1 (Dr Sam Surgeon)"
        assert httpx.get(f"{base}/ack/not-a-token").status_code == 404
    finally:
        service.stop()


def test_no_acknowledgement_re_sends_and_notifies_the_backup(make_site):
    site = make_site(escalation={"ack_timeout_seconds": 1.0})
    service = site.service()
    service.start()
    try:
        context = site.closed_study("noack-1")
        escalate.fn(context, [site.analysis(context, [("Aortic dissection", 0.88)])])
        (first,) = site.smtp.wait_for("surg1@hospital.test")
        (backup,) = site.smtp.wait_for("surg2@hospital.test", timeout=10)
        reminder = site.smtp.wait_for("surg1@hospital.test", count=2, timeout=10)[1]
        assert backup.received_at - first.received_at >= 1.0
        assert "REMINDER" in reminder.subject and "REMINDER" in backup.subject
        hooks = site.http.wait_for("/hooks/surgery", count=2)
        assert [r["id"] for r in hooks[1].json()["recipients"]] == ["surg1", "surg2"]
        assert hooks[1].json()["level_label"] == "backup 1"
        assert site.http.wait_for("/pager", count=3)[-1].json()["recipient"] in {"PG-101", "PG-102"}

        # the backup acknowledges through the API (a messaging integration's button)
        (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
        # a name typed by the caller acknowledges nothing; a login without the role neither
        api = f"http://127.0.0.1:{service.bound_port}/api/ack/{record.ack_token}"
        assert httpx.post(api, json={"by": "surg2"}).status_code == 401
        technologist = console_login("tech1", "Tess Tech", Role.TECHNOLOGIST)
        assert httpx.post(api, json={}, cookies=technologist).status_code == 403
        assert EscalationStore(site.database).for_study(context.study_instance_uid)[0].state == (
            "notified"
        )
        assert record.level == 1 and record.round >= 1
        answer = httpx.post(
            f"http://127.0.0.1:{service.bound_port}/api/ack/{record.ack_token}",
            json={},
            cookies=console_login("surg2", "Dr Bea Backup"),
        )
        assert answer.status_code == 200 and answer.json()["newly_acknowledged"] is True
        settled = len(site.smtp.received())
        time.sleep(2.5)
        assert len(site.smtp.received()) == settled
        events = [e["kind"] for e in EscalationStore(site.database).events(record.idempotency_key)]
        assert events[0] == "opened" and "escalated" in events and events[-1] == "acknowledged"
    finally:
        service.stop()


def test_webhook_down_retries_then_falls_through_to_the_next_channel(make_site):
    site = make_site(
        escalation={"teams": {"surgery": {"channels": ["webhook", "email"], "delivery": "first"}}}
    )
    site.http.stop()  # the webhook receiver is down
    context = site.closed_study("down-1")
    escalate.fn(context, [site.analysis(context, [("Tension Pneumothorax", 0.95)])])
    (mail,) = site.smtp.wait_for("surg1@hospital.test")
    assert 0 <= seconds_after_close(context, mail.received_at) < DEADLINE_SECONDS
    store = EscalationStore(site.database)
    (record,) = store.for_study(context.study_instance_uid)
    attempts = [
        (a["channel"], a["attempt"], a["outcome"]) for a in store.attempts(record.idempotency_key)
    ]
    assert attempts == [
        ("webhook", 1, "failed"),
        ("webhook", 2, "failed"),
        ("webhook", 3, "failed"),
        ("email", 1, "delivered"),
    ]
    assert record.first_channel == "email" and record.state == "notified"

    # busy (503) twice, then up: delivered by the webhook on the third try, no e-mail needed
    site.http.start()
    site.http.respond_with("/hooks/surgery", 503, 503)
    busy = site.closed_study("busy-1")
    escalate.fn(busy, [site.analysis(busy, [("Tension Pneumothorax", 0.95)])])
    assert [r.status for r in site.http.wait_for("/hooks/surgery", count=3)] == [503, 503, 200]
    assert len(site.smtp.received("surg1@hospital.test")) == 1

    # refused (401): not retried, straight to the next channel
    site.http.respond_with("/hooks/surgery", then=401)
    refused = site.closed_study("refused-1")
    escalate.fn(refused, [site.analysis(refused, [("Tension Pneumothorax", 0.95)])])
    site.smtp.wait_for("surg1@hospital.test", count=2)
    (record,) = store.for_study(refused.study_instance_uid)
    outcomes = [(a["channel"], a["outcome"]) for a in store.attempts(record.idempotency_key)]
    assert outcomes == [("webhook", "failed"), ("email", "delivered")]


def test_a_hanging_webhook_gets_its_time_budget_then_the_next_channel_goes(make_site):
    site = make_site(
        escalation={
            "send_timeout_seconds": 0.5,
            "channel_budget_seconds": 0.8,
            "teams": {"surgery": {"channels": ["webhook", "email"], "delivery": "first"}},
        }
    )
    site.http.hang("/hooks/surgery", 3.0)  # accepts, never answers in time
    context = site.closed_study("hang-1")
    escalate.fn(context, [site.analysis(context, [("Tension Pneumothorax", 0.95)])])
    (mail,) = site.smtp.wait_for("surg1@hospital.test")
    assert seconds_after_close(context, mail.received_at) < 2.5
    store = EscalationStore(site.database)
    (record,) = store.for_study(context.study_instance_uid)
    attempts = [(a["channel"], a["outcome"]) for a in store.attempts(record.idempotency_key)]
    # two timeouts fit the budget, a third would not: the e-mail goes instead
    assert attempts == [("webhook", "failed"), ("webhook", "failed"), ("email", "delivered")]
    assert "Timeout" in store.attempts(record.idempotency_key)[0]["detail"]


def test_nothing_delivered_is_taken_over_by_the_service_and_reaches_the_backup(make_site):
    site = make_site(
        escalation={"teams": {"surgery": {"channels": ["webhook"], "delivery": "first"}}}
    )
    site.http.stop()
    context = site.closed_study("outage-1")
    escalate.fn(context, [site.analysis(context, [("Tension Pneumothorax", 0.95)])])
    store = EscalationStore(site.database)
    (record,) = store.for_study(context.study_instance_uid)
    assert record.state == "open" and record.first_notified_at is None
    assert record.level == 1  # the next try widens to the backup
    site.http.start()
    service = site.service()
    service.start()
    try:
        (hook,) = site.http.wait_for("/hooks/surgery", timeout=10)
        assert [r["id"] for r in hook.json()["recipients"]] == ["surg1", "surg2"]
    finally:
        service.stop()
    (record,) = store.for_study(context.study_instance_uid)
    assert record.state == "notified" and record.first_notification_seconds is not None
    assert record.first_notification_seconds < DEADLINE_SECONDS


def test_rerun_does_not_notify_twice_unless_the_finding_changes(make_site):
    site = make_site()
    context = site.closed_study("rerun-1")
    analysis = site.analysis(context, [("Tension Pneumothorax", 0.91)])
    assert escalate.fn(context, [analysis]) == 1
    site.http.wait_for("/hooks/surgery")
    # retry of the task, rerun of the flow, a second analyzer with the same finding
    assert escalate.fn(context, [analysis]) == 0
    again = site.analysis(context, [("Tension Pneumothorax", 0.97)], analyzer="second-model")
    assert escalate.fn(context, [again]) == 0
    time.sleep(0.5)
    assert len(site.http.received("/hooks/surgery")) == 1
    assert len(site.smtp.received("surg1@hospital.test")) == 1

    # the finding changes (a new Critical label): that one is notified, once
    changed = site.analysis(context, [("Tension Pneumothorax", 0.91), ("Aortic dissection", 0.7)])
    assert escalate.fn(context, [changed]) == 1
    hooks = site.http.wait_for("/hooks/surgery", count=2)
    assert hooks[1].json()["finding"]["label"] == "Aortic dissection"
    time.sleep(0.3)
    assert len(site.http.received("/hooks/surgery")) == 2
    assert len(EscalationStore(site.database).for_study(context.study_instance_uid)) == 2


def test_routine_and_urgent_studies_never_notify(make_site):
    site = make_site()
    routine = site.closed_study("routine-1")
    urgent = site.closed_study("urgent-1")
    assert escalate.fn(routine, [site.analysis(routine, [("Effusion", 0.8)])]) == 0
    assert escalate.fn(urgent, [site.analysis(urgent, [("Pneumothorax", 0.9), ("Mass", 0.7)])]) == 0
    # a Critical label below its threshold is not present: Routine, nobody paged
    below = site.closed_study("below-1")
    assert escalate.fn(below, [site.analysis(below, [("Tension Pneumothorax", 0.3)])]) == 0
    time.sleep(0.5)
    assert site.http.requests == [] and site.smtp.mails == []
    store = EscalationStore(site.database)
    for context in (routine, urgent, below):
        assert store.for_study(context.study_instance_uid) == []


def test_late_first_notification_is_stored_logged_and_counted(make_site, caplog):
    site = make_site()
    service = site.service()
    service.start()
    try:
        context = site.closed_study("late-1", closed_seconds_ago=75)
        with caplog.at_level(logging.ERROR, logger="integrations.escalation.engine"):
            escalate.fn(context, [site.analysis(context, [("Tension Pneumothorax", 0.9)])])
        (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
        assert record.first_notification_late is True
        assert 75 <= record.first_notification_seconds < 90
        assert any("ALERT late critical notification" in r.getMessage() for r in caplog.records)
        metrics_url = f"http://127.0.0.1:{service.bound_port}/metrics"
        assert httpx.get(metrics_url).status_code == 401  # findings' counts are not public
        assert httpx.get(metrics_url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        it_admin = console_login("it1", "Ivy Admin", Role.IT_ADMIN)
        assert httpx.get(metrics_url, cookies=it_admin).status_code == 200
        escalations_url = f"http://127.0.0.1:{service.bound_port}/api/escalations"
        assert httpx.get(escalations_url, cookies=it_admin).status_code == 403  # findings
        assert httpx.get(escalations_url).status_code == 401
        assert httpx.get(escalations_url, headers=MONITORING).json()[0]["finding"] == (
            "Tension Pneumothorax"
        )
        metrics = httpx.get(metrics_url, headers=MONITORING).text
        assert "pacsflow_escalation_late_total 1" in metrics
        assert 'pacsflow_escalations{state="unacknowledged"} 1' in metrics
    finally:
        service.stop()


def test_critical_finding_without_a_team_is_recorded_unroutable_and_alerted(make_site, caplog):
    site = make_site(escalation={"use_default_rules": False})
    context = site.closed_study("noteam-1")
    with caplog.at_level(logging.ERROR, logger="integrations.escalation.engine"):
        escalate.fn(context, [site.analysis(context, [("Tension Pneumothorax", 0.9)])])
    (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
    assert record.state == "unroutable"
    assert any("nobody is notified" in r.getMessage() for r in caplog.records)
    # with a default team the same finding is routed
    routed = make_site(escalation={"use_default_rules": False, "default_team": "stroke"})
    other = routed.closed_study("noteam-2")
    escalate.fn(other, [routed.analysis(other, [("Tension Pneumothorax", 0.9)])])
    routed.smtp.wait_for("stroke1@hospital.test")


def test_unusable_channels_still_record_the_finding_and_alert(make_site, caplog):
    # a site that forgot PACSFLOW_ESCALATION__WEBHOOK_SECRET: the run is not failed, the
    # finding is recorded undelivered for the service and monitoring, and the log says why
    site = make_site(escalation={"webhook_secret": ""})
    context = site.closed_study("nosecret-1")
    with caplog.at_level(logging.ERROR, logger="integrations.escalation.engine"):
        assert escalate.fn(context, [site.analysis(context, [("Tension Pneumothorax", 0.9)])]) == 1
    (record,) = EscalationStore(site.database).for_study(context.study_instance_uid)
    assert record.state == "open" and record.first_notified_at is None
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "PACSFLOW_ESCALATION__WEBHOOK_SECRET" in messages and "no channel" in messages
    assert site.http.requests == [] and site.smtp.mails == []


def test_the_ward_comes_from_the_adt_feed_when_it_knows_the_patient(make_site):
    """The images say where the patient was scanned; ADT says where they are now."""
    site = make_site()
    with running_listener(site.settings) as listener:
        sender = listener.sender()
        try:
            for message in (
                adt("A01", "adt-1", mrn="PF-TEST-1", ward="ED", room="", bed="4"),
                adt("A02", "adt-2", mrn="PF-TEST-1", ward="ICU", room="12", bed="3"),
            ):
                assert msa(sender.send(message))[0] == "AA"
        finally:
            sender.close()
    context = site.closed_study("tension-adt", location="Emergency bay 4")
    analysis = site.analysis(context, [("Tension Pneumothorax", 0.93)])
    assert escalate.fn(context, [analysis]) == 1
    (hook,) = site.http.wait_for("/hooks/surgery")
    assert hook.json()["patient"]["ward"] == "ICU, room 12, bed 3"
    (mail,) = site.smtp.wait_for("surg1@hospital.test")
    assert "ICU, room 12, bed 3" in mail.body
