"""HL7 v2.5/v2.5.1 priority update for the PACS/RIS worklist: ORM^O01 or OMI^O23 (pure).

The AI urgency tier becomes the order's priority so that the radiologist's own worklist sorts
a Critical study first. The mapping (HL7 table 0485 for TQ1-9 / the priority component of
ORC-7 and OBR-27; DICOM Requested Procedure Priority (0040,1003) for sites that map it into
the modality or reading worklist):

==========  ===========  ==================  =====================================
AI tier     HL7 (0485)   DICOM (0040,1003)   meaning
==========  ===========  ==================  =====================================
Critical    S (Stat)     STAT                read now; escalation runs in parallel
Urgent      A (ASAP)     HIGH                read before routine work
Routine     R (Routine)  ROUTINE             no change
==========  ===========  ==================  =====================================

ORM^O01 (most RIS): ORC-1 order control ``XO`` (change) or ``SC`` (status changed), the
accession number as filler order number (ORC-3, OBR-3) and OBR-18, priority in ORC-7.6,
OBR-5 and OBR-27.6, the Study Instance UID in the IHE ``ZDS`` segment. OMI^O23 (IHE
imaging order): the same ORC, priority in TQ1-9, and IPC with accession, Study Instance UID
and modality. The tier, finding and rule travel in an NTE for the radiologist.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from hl7apy.core import Message

from integrations.dicom.uids import derived_uid
from integrations.hl7.model import escape, to_er7
from models.results import UrgencyTier

HL7_PRIORITY = {
    UrgencyTier.CRITICAL: ("S", "Stat"),
    UrgencyTier.URGENT: ("A", "ASAP"),
    UrgencyTier.ROUTINE: ("R", "Routine"),
}
DICOM_REQUESTED_PROCEDURE_PRIORITY = {
    UrgencyTier.CRITICAL: "STAT",
    UrgencyTier.URGENT: "HIGH",
    UrgencyTier.ROUTINE: "ROUTINE",
}

Route = Literal["orm_o01", "omi_o23"]
PRIORITY_VERSION = "2.5"  # the default; [ris] hl7_version


@dataclass(frozen=True)
class PriorityUpdate:
    """The study, its patient and its new tier."""

    study_instance_uid: str
    generation: int
    accession_number: str
    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    patient_birth_date: str
    patient_sex: str
    modality: str
    study_description: str
    patient_location: str
    tier: UrgencyTier
    primary_finding: str
    rule: str
    order_control: Literal["XO", "SC"] = "XO"
    sending_application: str = "PACSFLOW"
    sending_facility: str = "PACSFLOW"
    receiving_application: str = "RIS"
    receiving_facility: str = "HOSPITAL"

    def __post_init__(self) -> None:
        if not isinstance(self.tier, UrgencyTier):
            raise TypeError("tier must be an UrgencyTier")
        if self.order_control not in ("XO", "SC"):
            raise ValueError("order_control must be 'XO' or 'SC'")


def priority_control_id(update: PriorityUpdate, route: Route) -> str:
    """MSH-10: fixed per study, generation, route and tier, so a retry or rerun reuses it
    and a changed tier is a new message."""
    uid = derived_uid(
        "priority", route, update.study_instance_uid, update.generation, update.tier.value
    )
    return uid.removeprefix("2.25.")[-20:]


def _msh(
    message: Message, update: PriorityUpdate, kind: str, control_id: str, now: datetime
) -> None:
    version = message.version
    message.msh.msh_3 = escape(update.sending_application)
    message.msh.msh_4 = escape(update.sending_facility)
    message.msh.msh_5 = escape(update.receiving_application)
    message.msh.msh_6 = escape(update.receiving_facility)
    message.msh.msh_7 = now.strftime("%Y%m%d%H%M%S")
    message.msh.msh_9 = kind
    message.msh.msh_10 = control_id
    message.msh.msh_11 = "P"
    message.msh.msh_12 = version


def _patient(group: object, update: PriorityUpdate, visit_group: str) -> None:
    from integrations.hl7.oru import person_name

    pid = group.pid  # type: ignore[attr-defined]
    pid.pid_1 = "1"
    identifier = escape(update.patient_id)
    if update.issuer_of_patient_id:
        identifier += f"^^^{escape(update.issuer_of_patient_id)}^MR"
    pid.pid_3 = identifier
    pid.pid_5 = person_name(update.patient_name) or "UNKNOWN"
    if update.patient_birth_date:
        pid.pid_7 = escape(update.patient_birth_date)
    if update.patient_sex in {"M", "F", "O", "U"}:
        pid.pid_8 = update.patient_sex
    if update.patient_location:
        visit = group.add_group(visit_group)  # type: ignore[attr-defined]
        visit.pv1.pv1_1 = "1"
        visit.pv1.pv1_2 = "U"
        visit.pv1.pv1_3 = escape(update.patient_location)


def _note(update: PriorityUpdate) -> str:
    finding = f": {update.primary_finding}" if update.primary_finding else ""
    rule = f" (rule {update.rule})" if update.rule else ""
    return escape(f"AI urgency tier {update.tier.value}{finding}{rule}")


def _order_number(update: PriorityUpdate) -> str:
    return escape(update.accession_number or update.study_instance_uid[-22:])


def build_orm_o01(update: PriorityUpdate, now: datetime, version: str = PRIORITY_VERSION) -> str:
    """ORM^O01 changing the order's priority, as ER7 text."""
    code, _ = HL7_PRIORITY[update.tier]
    message = Message("ORM_O01", version=version)
    _msh(message, update, "ORM^O01^ORM_O01", priority_control_id(update, "orm_o01"), now)
    _patient(message.add_group("ORM_O01_PATIENT"), update, "ORM_O01_PATIENT_VISIT")
    order = message.add_group("ORM_O01_ORDER")
    order.orc.orc_1 = update.order_control
    order.orc.orc_3 = _order_number(update)
    order.orc.orc_7 = f"^^^^^{code}"
    order.orc.orc_9 = now.strftime("%Y%m%d%H%M%S")
    detail = order.add_group("ORM_O01_ORDER_DETAIL")
    choice = detail.add_group("ORM_O01_OBRRQDRQ1RXOODSODT_SUPPGRP")
    obr = choice.obr
    obr.obr_1 = "1"
    obr.obr_3 = _order_number(update)
    obr.obr_4 = f"^{escape(update.study_description) or 'Imaging study'}"
    obr.obr_5 = code
    obr.obr_18 = escape(update.accession_number)
    if update.modality:
        obr.obr_24 = escape(update.modality.split("/")[0])
    obr.obr_27 = f"^^^^^{code}"
    note = detail.add_segment("NTE")
    note.nte_1 = "1"
    note.nte_3 = _note(update)
    zds = message.add_segment("ZDS")
    zds.zds_1 = f"{escape(update.study_instance_uid)}^100^Application^DICOM"
    return to_er7(message)


def build_omi_o23(update: PriorityUpdate, now: datetime, version: str = PRIORITY_VERSION) -> str:
    """OMI^O23 changing the imaging order's priority, as ER7 text."""
    code, text = HL7_PRIORITY[update.tier]
    message = Message("OMI_O23", version=version)
    _msh(message, update, "OMI^O23^OMI_O23", priority_control_id(update, "omi_o23"), now)
    _patient(message.add_group("OMI_O23_PATIENT"), update, "OMI_O23_PATIENT_VISIT")
    order = message.add_group("OMI_O23_ORDER")
    order.orc.orc_1 = update.order_control
    order.orc.orc_3 = _order_number(update)
    order.orc.orc_9 = now.strftime("%Y%m%d%H%M%S")
    timing = order.add_group("OMI_O23_TIMING")
    timing.tq1.tq1_1 = "1"
    timing.tq1.tq1_9 = f"{code}^{text}^HL70485"
    obr = order.obr
    obr.obr_1 = "1"
    obr.obr_3 = _order_number(update)
    obr.obr_4 = f"^{escape(update.study_description) or 'Imaging study'}"
    note = order.add_segment("NTE")
    note.nte_1 = "1"
    note.nte_3 = _note(update)
    ipc = order.add_segment("IPC")
    ipc.ipc_1 = _order_number(update)
    ipc.ipc_2 = _order_number(update)
    ipc.ipc_3 = escape(update.study_instance_uid)
    ipc.ipc_4 = _order_number(update)
    if update.modality:
        ipc.ipc_5 = escape(update.modality.split("/")[0])
    return to_er7(message)


def build_priority_update(
    update: PriorityUpdate, route: Route, now: datetime, version: str = PRIORITY_VERSION
) -> tuple[str, str, str]:
    """(message type, MSH-10, ER7) for the configured route, in the RIS's HL7 version."""
    if route == "orm_o01":
        return "ORM^O01", priority_control_id(update, route), build_orm_o01(update, now, version)
    if route == "omi_o23":
        return "OMI^O23", priority_control_id(update, route), build_omi_o23(update, now, version)
    raise ValueError(f"unknown worklist route {route!r}")
