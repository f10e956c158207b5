"""HL7 v2.5/v2.5.1 ORU^R01 critical-finding alert for the EMR inbox, high priority (pure).

One message per escalation notification (level and round): the EMR files it in the inboxes of
the people in OBR-28 (result copies to) and shows it as critical. Priority is carried where
EMR interfaces look for it: OBR-5 ``S``, TQ1-9 ``S^Stat^HL70485``, OBX-8 ``AA`` (critically
abnormal), and ORC-1 ``RE``. The finding is OBX 1 (coded), the tier OBX 2; NTEs carry the
study link, the acknowledge link and the not-for-primary-diagnosis statement.
"""

from __future__ import annotations

from datetime import datetime

from hl7apy.core import Message

from integrations.dicom.uids import derived_uid
from integrations.escalation.notification import Notification
from integrations.hl7.model import field_text, set_field, set_fields, to_er7
from integrations.hl7.oru import (
    NOT_FOR_PRIMARY_DIAGNOSIS,
    ORU_VERSION,
    patient_identifier,
    person_name,
)

ALERT_MESSAGE_TYPE = "ORU^R01"


def alert_control_id(notification: Notification) -> str:
    """MSH-10: the same for every retry of one notification, new for each level and round."""
    uid = derived_uid("alert", notification.idempotency_key, notification.level, notification.round)
    return uid.removeprefix("2.25.")[-20:]


def build_alert(
    notification: Notification,
    *,
    patient_name: str = "",
    issuer_of_patient_id: str = "",
    patient_birth_date: str = "",
    patient_sex: str = "",
    now: datetime,
    sending_application: str = "PACSFLOW",
    sending_facility: str = "PACSFLOW",
    receiving_application: str = "EMR",
    receiving_facility: str = "HOSPITAL",
    version: str = ORU_VERSION,
) -> str:
    """The alert as ER7 text (segments separated by carriage returns)."""
    timestamp = now.strftime("%Y%m%d%H%M%S")
    message = Message("ORU_R01", version=version)
    set_fields(
        message.msh,
        {
            3: field_text(sending_application),
            4: field_text(sending_facility),
            5: field_text(receiving_application),
            6: field_text(receiving_facility),
            7: field_text(timestamp),
            9: field_text("ORU", "R01", "ORU_R01"),
            10: field_text(alert_control_id(notification)),
            11: field_text("P"),
            12: field_text(version),
        },
    )

    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    set_fields(
        patient.pid,
        {
            1: field_text("1"),
            3: patient_identifier(notification.patient_id, issuer_of_patient_id),
            5: person_name(patient_name) or field_text("UNKNOWN"),
            7: field_text(patient_birth_date),
            8: field_text(patient_sex) if patient_sex in {"M", "F", "O", "U"} else "",
        },
    )
    if notification.patient_location:
        visit = patient.add_group("ORU_R01_VISIT")
        set_fields(
            visit.pv1,
            {1: field_text("1"), 2: field_text("U"), 3: field_text(notification.patient_location)},
        )

    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order_number = field_text(
        notification.accession_number or notification.study_instance_uid[-22:]
    )
    set_fields(order.orc, {1: field_text("RE"), 3: order_number})
    obr = order.obr
    set_fields(
        obr,
        {
            1: field_text("1"),
            3: order_number,
            4: field_text("AI-ALERT", "AI critical finding alert", "L"),
            5: field_text("S"),
            22: field_text(timestamp),
            25: field_text("P"),
        },
    )
    copies = [
        field_text(r.person.hl7_id or r.person_id, r.person.name) for r in notification.recipients
    ]
    set_field(obr, 28, *copies)
    # NTEs follow OBR and precede TQ1 and the OBX groups (ORU_R01 v2.5 segment order).
    notes = [
        f"Critical AI finding for {notification.team_name} ({notification.level_label}).",
        f"Study: {notification.study_link or notification.study_instance_uid}",
        f"Acknowledge: {notification.ack_link}",
        NOT_FOR_PRIMARY_DIAGNOSIS,
    ]
    for index, text in enumerate(notes, start=1):
        set_fields(order.add_segment("NTE"), {1: field_text(str(index)), 3: field_text(text)})
    timing = order.add_group("ORU_R01_TIMING_QTY")
    set_fields(timing.tq1, {1: field_text("1"), 9: field_text("S", "Stat", "HL70485")})

    scheme, _, value = notification.finding_code.partition(":")
    finding_id = (
        field_text(value, notification.finding, scheme)
        if value
        else field_text("AI-FINDING", notification.finding, "L")
    )
    observations = [
        (
            finding_id,
            field_text(
                f"present, confidence {notification.probability:.2f}"
                f" ({notification.analyzer}, rule {notification.rule or 'none'})"
            ),
        ),
        (field_text("AI-TIER", "AI urgency tier", "L"), field_text(notification.tier)),
    ]
    for index, (identifier_text, value_text) in enumerate(observations, start=1):
        group = order.add_group("ORU_R01_OBSERVATION")
        set_fields(
            group.obx,
            {
                1: field_text(str(index)),
                2: field_text("ST"),
                3: identifier_text,
                5: value_text,
                8: field_text("AA"),
                11: field_text("P"),
            },
        )
    return to_er7(message)
