"""Notification texts, webhook signature, HL7 alert and worklist priority messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hl7apy.parser import parse_message

from integrations.escalation.notification import (
    SHORT_TEXT_LIMIT,
    Notification,
    ack_link,
    sign,
    study_link,
    verify_signature,
)
from integrations.escalation.rules import Recipient
from integrations.hl7.alert import alert_control_id, build_alert
from integrations.hl7.priority import (
    DICOM_REQUESTED_PROCEDURE_PRIORITY,
    PriorityUpdate,
    build_omi_o23,
    build_orm_o01,
    build_priority_update,
    priority_control_id,
)
from integrations.settings import PersonSettings
from models.results import UrgencyTier

NOW = datetime(2026, 11, 27, 12, 0, 5, tzinfo=UTC)
SURGEON = Recipient("surg1", PersonSettings(name="Dr Sam Surgeon", hl7_id="D101", pager="PG-1"))
BACKUP = Recipient("surg2", PersonSettings(name="Dr Bea Backup"))


def notification(**changes) -> Notification:
    values = dict(
        idempotency_key="k" * 32,
        level=0,
        level_label="on call",
        round=0,
        team_id="surgery",
        team_name="On-call surgery",
        recipients=(SURGEON,),
        study_instance_uid="1.2.826.0.1.3680043.8.498.1",
        accession_number="A123",
        modality="DX",
        patient_id="PID-1",
        patient_location="ICU bed 3",
        finding="Tension Pneumothorax",
        finding_code="99PACSFLOW:TENSION-PNEUMOTHORAX",
        probability=0.934,
        tier="Critical",
        rule="default:tension-pneumothorax",
        analyzer="chest-xray",
        study_link="https://viewer/?study=1.2.826.0.1.3680043.8.498.1",
        ack_link=ack_link("https://pacsflow.h.test/", "tok-en_1"),
        ack_token="tok-en_1",
        study_closed_at=datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC),
        issued_at=NOW,
    )
    values.update(changes)
    return Notification(**values)


def test_signature_verifies_only_the_same_body_secret_and_recent_time():
    body = json.dumps(notification().to_json()).encode()
    signature = sign(b"secret", 1_800_000_000, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature(b"secret", "1800000000", body, signature, now=1_800_000_010)
    assert not verify_signature(b"secret", "1800000000", body + b" ", signature, now=1_800_000_010)
    assert not verify_signature(b"other", "1800000000", body, signature, now=1_800_000_010)
    assert not verify_signature(b"secret", "1800000001", body, signature, now=1_800_000_010)
    assert not verify_signature(b"secret", "1800000000", body, signature, now=1_800_001_000)
    assert not verify_signature(b"secret", "soon", body, signature, now=1_800_000_010)


def test_every_form_carries_study_ward_finding_confidence_and_links():
    item = notification()
    data = item.to_json()
    assert data["study"]["study_instance_uid"] == item.study_instance_uid
    assert data["patient"] == {"ward": "ICU bed 3"}
    assert "accession_number" not in data["study"]
    assert data["finding"]["confidence"] == 0.934 and data["finding"]["tier"] == "Critical"
    assert data["acknowledge"] == {
        "url": "https://pacsflow.h.test/ack/tok-en_1",
        "token": "tok-en_1",
    }
    assert data["delivery_id"] == f"{'k' * 32}-L0-R0"
    personal = item.for_recipient(SURGEON)
    assert personal.ack_link == "https://pacsflow.h.test/ack/tok-en_1?by=surg1"
    for text in (personal.subject(), personal.short_text(), personal.email_body()):
        assert "Tension Pneumothorax" in text and "93%" in text and "ICU bed 3" in text
    assert personal.ack_link in personal.short_text() and personal.ack_link in personal.email_body()
    assert item.study_link in personal.email_body()
    # by default no MRN and no accession number in anything that leaves as a page
    every_text = personal.short_text() + personal.subject() + personal.email_body()
    assert "PID-1" not in every_text and "A123" not in every_text
    assert "PID-1" not in json.dumps(data) and "A123" not in json.dumps(data)


def test_a_site_may_add_the_accession_to_texts_and_the_mrn_to_the_webhook():
    item = notification(include_identifiers=True).for_recipient(SURGEON)
    assert "A123" in item.subject() and "A123" in item.short_text()
    assert "A123" in item.email_body() and "PID-1" not in item.email_body()
    assert item.to_json()["patient"] == {"id": "PID-1", "ward": "ICU bed 3"}
    assert item.to_json()["study"]["accession_number"] == "A123"


def test_short_text_keeps_the_ack_link_whole_within_160_characters():
    long = notification(finding="Tension pneumothorax " * 10, patient_location="Ward " * 20)
    text = long.short_text()
    assert len(text) <= SHORT_TEXT_LIMIT
    assert text.endswith(long.ack_link)
    assert notification(round=2).short_text().startswith("REMINDER")


def test_study_link_template_is_replaced_and_quoted_not_formatted():
    assert study_link(
        "https://v/?s={study_instance_uid}&a={accession_number}", "1.2.3", "A 1/2"
    ) == ("https://v/?s=1.2.3&a=A%201%2F2")
    # a template is data: no attribute access, no other placeholders
    assert (
        study_link("{study_instance_uid.__class__}", "1.2", "") == "{study_instance_uid.__class__}"
    )


def segments(er7: str, name: str) -> list:
    message = parse_message(er7, find_groups=False)
    return [segment for segment in message.children if segment.name == name]


def test_hl7_alert_is_high_priority_and_names_every_recipient():
    item = notification(recipients=(SURGEON, BACKUP), level=1, level_label="backup 1", round=1)
    er7 = build_alert(item, patient_name="Doe^Jane", issuer_of_patient_id="HOSP", now=NOW)
    (msh,) = segments(er7, "MSH")
    assert msh.msh_9.value == "ORU^R01^ORU_R01"
    assert msh.msh_10.value == alert_control_id(item)
    (pid,) = segments(er7, "PID")
    assert pid.pid_3.value == "PID-1^^^HOSP^MR"
    (pv1,) = segments(er7, "PV1")
    assert pv1.pv1_3.value == "ICU bed 3"
    (obr,) = segments(er7, "OBR")
    assert obr.obr_5.value == "S" and obr.obr_3.value == "A123"
    assert [field.value for field in obr.obr_28] == ["D101^Dr Sam Surgeon", "surg2^Dr Bea Backup"]
    (tq1,) = segments(er7, "TQ1")
    assert tq1.tq1_9.value == "S^Stat^HL70485"
    finding, tier = segments(er7, "OBX")
    assert finding.obx_3.value == "TENSION-PNEUMOTHORAX^Tension Pneumothorax^99PACSFLOW"
    assert tier.obx_5.value == "Critical"
    assert finding.obx_8.value == tier.obx_8.value == "AA"
    notes = " ".join(note.nte_3.value for note in segments(er7, "NTE"))
    assert item.ack_link in notes and "not for primary diagnosis" in notes
    # one control ID per notification: retries reuse it, the next round does not
    assert alert_control_id(item) == alert_control_id(
        notification(recipients=(SURGEON,), level=1, round=1)
    )
    assert alert_control_id(item) != alert_control_id(notification(level=1, round=2))


def update(tier: UrgencyTier = UrgencyTier.CRITICAL, **changes) -> PriorityUpdate:
    values = dict(
        study_instance_uid="1.2.826.0.1.3680043.8.498.7",
        generation=1,
        accession_number="A777",
        patient_id="PID-7",
        issuer_of_patient_id="HOSP",
        patient_name="Doe^John",
        patient_birth_date="19600101",
        patient_sex="M",
        modality="CT",
        study_description="CT HEAD",
        patient_location="Stroke unit",
        tier=tier,
        primary_finding="Intracranial hemorrhage",
        rule="default:intracranial-hemorrhage",
    )
    values.update(changes)
    return PriorityUpdate(**values)


@pytest.mark.parametrize(
    ("tier", "code", "dicom"),
    [
        (UrgencyTier.CRITICAL, "S", "STAT"),
        (UrgencyTier.URGENT, "A", "HIGH"),
        (UrgencyTier.ROUTINE, "R", "ROUTINE"),
    ],
)
def test_orm_o01_priority_update(tier, code, dicom):
    er7 = build_orm_o01(update(tier), NOW)
    (msh,) = segments(er7, "MSH")
    assert msh.msh_9.value == "ORM^O01^ORM_O01"
    (orc,) = segments(er7, "ORC")
    assert orc.orc_1.value == "XO" and orc.orc_3.value == "A777"
    assert orc.orc_7.value == f"^^^^^{code}"
    (obr,) = segments(er7, "OBR")
    assert obr.obr_5.value == code and obr.obr_27.value == f"^^^^^{code}"
    assert obr.obr_3.value == obr.obr_18.value == "A777"
    assert er7.split("\r")[-1].startswith("ZDS|1.2.826.0.1.3680043.8.498.7^100^Application^DICOM")
    (note,) = segments(er7, "NTE")
    assert tier.value in note.nte_3.value
    assert DICOM_REQUESTED_PROCEDURE_PRIORITY[tier] == dicom


def test_omi_o23_priority_update_validates_against_hl7_2_5():
    er7 = build_omi_o23(update(), NOW)
    message = parse_message(er7, find_groups=True)
    message.validate()  # hl7apy's strict structure check of OMI^O23 v2.5
    (tq1,) = segments(er7, "TQ1")
    assert tq1.tq1_9.value == "S^Stat^HL70485"
    (ipc,) = segments(er7, "IPC")
    assert ipc.ipc_1.value == "A777" and ipc.ipc_3.value == "1.2.826.0.1.3680043.8.498.7"
    assert ipc.ipc_5.value == "CT"


def test_priority_control_id_changes_with_the_tier_only():
    kind, control, _ = build_priority_update(update(), "omi_o23", NOW)
    assert kind == "OMI^O23"
    assert control == priority_control_id(update(), "omi_o23")
    assert control == build_priority_update(update(), "omi_o23", NOW.replace(hour=13))[1]
    assert control != priority_control_id(update(UrgencyTier.URGENT), "omi_o23")
    assert control != priority_control_id(update(), "orm_o01")
    with pytest.raises(ValueError):
        build_priority_update(update(), "fax", NOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        update(tier="Critical")


def test_every_form_of_a_non_clinical_page_says_so_first():
    page = notification(clinical_use=False)
    assert page.subject().startswith("NOT FOR CLINICAL USE CRITICAL AI finding")
    text = page.short_text()
    assert text.startswith("NOT FOR CLINICAL USE CRITICAL AI:") and len(text) <= SHORT_TEXT_LIMIT
    assert page.ack_link in text
    assert page.email_body().startswith("NOT FOR CLINICAL USE: this finding comes from")
    body = page.to_json()
    assert body["clinical_use"] is False and body["notice"] == "NOT FOR CLINICAL USE"
    reminder = notification(clinical_use=False, round=1)
    assert reminder.subject().startswith("NOT FOR CLINICAL USE REMINDER ")
    clinical = notification()
    assert "NOT FOR CLINICAL USE" not in clinical.subject() + clinical.short_text()
    assert "NOT FOR CLINICAL USE" not in clinical.email_body() + json.dumps(clinical.to_json())


@pytest.mark.parametrize("version", ["2.5", "2.5.1"])
@pytest.mark.parametrize("route", ["orm_o01", "omi_o23"])
def test_priority_updates_are_built_in_the_version_the_ris_is_configured_for(route, version):
    message_type, _, er7 = build_priority_update(update(), route, NOW, version)
    message = parse_message(er7, find_groups=True)
    if route == "omi_o23":  # hl7apy takes ORM_O01's choice group (OBR or RQD...) for all required
        message.validate()  # hl7apy's strict structure check in that version
    (msh,) = segments(er7, "MSH")
    assert msh.msh_12.value == version and msh.msh_9.value.startswith(message_type)
