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
from typing import Any, Literal

from hl7apy.core import Message

from integrations.dicom.uids import derived_uid
from integrations.hl7.model import field_text, set_fields, to_er7
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
    message: Message,
    update: PriorityUpdate,
    kind: tuple[str, str, str],
    control_id: str,
    now: datetime,
) -> None:
    set_fields(
        message.msh,
        {
            3: field_text(update.sending_application),
            4: field_text(update.sending_facility),
            5: field_text(update.receiving_application),
            6: field_text(update.receiving_facility),
            7: field_text(now.strftime("%Y%m%d%H%M%S")),
            9: field_text(*kind),
            10: field_text(control_id),
            11: field_text("P"),
            12: field_text(message.version),
        },
    )


def _patient(group: Any, update: PriorityUpdate, visit_group: str) -> None:
    from integrations.hl7.oru import patient_identifier, person_name

    sex = update.patient_sex if update.patient_sex in {"M", "F", "O", "U"} else ""
    set_fields(
        group.pid,
        {
            1: field_text("1"),
            3: patient_identifier(update.patient_id, update.issuer_of_patient_id),
            5: person_name(update.patient_name) or field_text("UNKNOWN"),
            7: field_text(update.patient_birth_date),
            8: field_text(sex),
        },
    )
    if update.patient_location:
        visit = group.add_group(visit_group)
        set_fields(
            visit.pv1,
            {1: field_text("1"), 2: field_text("U"), 3: field_text(update.patient_location)},
        )


def _note(update: PriorityUpdate) -> str:
    finding = f": {update.primary_finding}" if update.primary_finding else ""
    rule = f" (rule {update.rule})" if update.rule else ""
    return field_text(f"AI urgency tier {update.tier.value}{finding}{rule}")


def _order_number(update: PriorityUpdate) -> str:
    return field_text(update.accession_number or update.study_instance_uid[-22:])


def _procedure(update: PriorityUpdate) -> str:
    """OBR-4: no code, the study description as text."""
    return field_text("", update.study_description or "Imaging study")


def _modality(update: PriorityUpdate) -> str:
    return field_text(update.modality.split("/")[0]) if update.modality else ""


def _priority_component(code: str) -> str:
    """ORC-7 and OBR-27 (TQ) with the priority in component 6."""
    return field_text("", "", "", "", "", code)


def build_orm_o01(update: PriorityUpdate, now: datetime, version: str = PRIORITY_VERSION) -> str:
    """ORM^O01 changing the order's priority, as ER7 text."""
    code, _ = HL7_PRIORITY[update.tier]
    message = Message("ORM_O01", version=version)
    _msh(message, update, ("ORM", "O01", "ORM_O01"), priority_control_id(update, "orm_o01"), now)
    _patient(message.add_group("ORM_O01_PATIENT"), update, "ORM_O01_PATIENT_VISIT")
    order = message.add_group("ORM_O01_ORDER")
    set_fields(
        order.orc,
        {
            1: field_text(update.order_control),
            3: _order_number(update),
            7: _priority_component(code),
            9: field_text(now.strftime("%Y%m%d%H%M%S")),
        },
    )
    detail = order.add_group("ORM_O01_ORDER_DETAIL")
    choice = detail.add_group("ORM_O01_OBRRQDRQ1RXOODSODT_SUPPGRP")
    set_fields(
        choice.obr,
        {
            1: field_text("1"),
            3: _order_number(update),
            4: _procedure(update),
            5: field_text(code),
            18: field_text(update.accession_number),
            24: _modality(update),
            27: _priority_component(code),
        },
    )
    set_fields(detail.add_segment("NTE"), {1: field_text("1"), 3: _note(update)})
    study = field_text(update.study_instance_uid, "100", "Application", "DICOM")
    set_fields(message.add_segment("ZDS"), {1: study})
    return to_er7(message)


def build_omi_o23(update: PriorityUpdate, now: datetime, version: str = PRIORITY_VERSION) -> str:
    """OMI^O23 changing the imaging order's priority, as ER7 text."""
    code, text = HL7_PRIORITY[update.tier]
    message = Message("OMI_O23", version=version)
    _msh(message, update, ("OMI", "O23", "OMI_O23"), priority_control_id(update, "omi_o23"), now)
    _patient(message.add_group("OMI_O23_PATIENT"), update, "OMI_O23_PATIENT_VISIT")
    order = message.add_group("OMI_O23_ORDER")
    set_fields(
        order.orc,
        {
            1: field_text(update.order_control),
            3: _order_number(update),
            9: field_text(now.strftime("%Y%m%d%H%M%S")),
        },
    )
    timing = order.add_group("OMI_O23_TIMING")
    set_fields(timing.tq1, {1: field_text("1"), 9: field_text(code, text, "HL70485")})
    set_fields(order.obr, {1: field_text("1"), 3: _order_number(update), 4: _procedure(update)})
    set_fields(order.add_segment("NTE"), {1: field_text("1"), 3: _note(update)})
    set_fields(
        order.add_segment("IPC"),
        {
            1: _order_number(update),
            2: _order_number(update),
            3: field_text(update.study_instance_uid),
            4: _order_number(update),
            5: _modality(update),
        },
    )
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
