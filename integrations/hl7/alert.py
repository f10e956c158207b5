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
from integrations.hl7.model import escape, to_er7
from integrations.hl7.oru import NOT_FOR_PRIMARY_DIAGNOSIS, ORU_VERSION, person_name

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
    message.msh.msh_3 = escape(sending_application)
    message.msh.msh_4 = escape(sending_facility)
    message.msh.msh_5 = escape(receiving_application)
    message.msh.msh_6 = escape(receiving_facility)
    message.msh.msh_7 = timestamp
    message.msh.msh_9 = "ORU^R01^ORU_R01"
    message.msh.msh_10 = alert_control_id(notification)
    message.msh.msh_11 = "P"
    message.msh.msh_12 = version

    result = message.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    pid = patient.pid
    pid.pid_1 = "1"
    identifier = escape(notification.patient_id)
    if issuer_of_patient_id:
        identifier += f"^^^{escape(issuer_of_patient_id)}^MR"
    pid.pid_3 = identifier
    pid.pid_5 = person_name(patient_name) or "UNKNOWN"
    if patient_birth_date:
        pid.pid_7 = escape(patient_birth_date)
    if patient_sex in {"M", "F", "O", "U"}:
        pid.pid_8 = patient_sex
    if notification.patient_location:
        visit = patient.add_group("ORU_R01_VISIT")
        visit.pv1.pv1_1 = "1"
        visit.pv1.pv1_2 = "U"
        visit.pv1.pv1_3 = escape(notification.patient_location)

    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order_number = escape(notification.accession_number or notification.study_instance_uid[-22:])
    order.orc.orc_1 = "RE"
    order.orc.orc_3 = order_number
    obr = order.obr
    obr.obr_1 = "1"
    obr.obr_3 = order_number
    obr.obr_4 = "AI-ALERT^AI critical finding alert^L"
    obr.obr_5 = "S"
    obr.obr_22 = timestamp
    obr.obr_25 = "P"
    copies = [
        f"{escape(r.person.hl7_id or r.person_id)}^{escape(r.person.name)}"
        for r in notification.recipients
    ]
    if copies:
        obr.obr_28 = copies[0]
        for extra in copies[1:]:
            obr.add_field("OBR_28").value = extra
    # NTEs follow OBR and precede TQ1 and the OBX groups (ORU_R01 v2.5 segment order).
    notes = [
        f"Critical AI finding for {notification.team_name} ({notification.level_label}).",
        f"Study: {notification.study_link or notification.study_instance_uid}",
        f"Acknowledge: {notification.ack_link}",
        NOT_FOR_PRIMARY_DIAGNOSIS,
    ]
    for index, text in enumerate(notes, start=1):
        note = order.add_segment("NTE")
        note.nte_1 = str(index)
        note.nte_3 = escape(text)
    timing = order.add_group("ORU_R01_TIMING_QTY")
    timing.tq1.tq1_1 = "1"
    timing.tq1.tq1_9 = "S^Stat^HL70485"

    scheme, _, value = notification.finding_code.partition(":")
    finding_id = (
        f"{escape(value)}^{escape(notification.finding)}^{escape(scheme)}"
        if value
        else f"AI-FINDING^{escape(notification.finding)}^L"
    )
    observations = [
        (
            finding_id,
            escape(
                f"present, confidence {notification.probability:.2f}"
                f" ({notification.analyzer}, rule {notification.rule or 'none'})"
            ),
        ),
        ("AI-TIER^AI urgency tier^L", escape(notification.tier)),
    ]
    for index, (identifier_text, value_text) in enumerate(observations, start=1):
        group = order.add_group("ORU_R01_OBSERVATION")
        obx = group.obx
        obx.obx_1 = str(index)
        obx.obx_2 = "ST"
        obx.obx_3 = identifier_text
        obx.obx_5 = value_text
        obx.obx_8 = "AA"
        obx.obx_11 = "P"
    return to_er7(message)
