"""DICOM PS3.15 A.5 audit messages: coded values, a validated builder and a checker (pure).

An :class:`AuditMessage` is a value: the event (EventID, EventTypeCode, action, outcome,
time), its active participants (who did it, from where), the audit source, and the
participant objects (the patient, the study, a configuration). :meth:`AuditMessage.to_xml`
writes the ``AuditMessage`` XML of the DICOM audit schema (PS3.15 A.5.1, coded values as
``csd-code`` / ``codeSystemName`` / ``originalText``), and :func:`check_audit_xml` parses
such XML back and names what is missing, so that nothing malformed is ever stored or sent.

The factory functions at the end (``user_authentication``, ``instances_transferred``, ...)
build the messages pacsflow records, each as the matching PS3.15 A.5.3 table prescribes.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum, StrEnum

DCM = "DCM"
RFC_3881 = "RFC-3881"


@dataclass(frozen=True)
class Code:
    """A coded value (code, code system name, meaning), as PS3.15 writes EV(code, DCM, "...")."""

    code: str
    scheme: str
    meaning: str

    def __post_init__(self) -> None:
        if not self.code or not self.scheme or not self.meaning:
            raise ValueError(f"a coded value needs code, scheme and meaning: {self!r}")


class EventID:
    """DCID 400 Audit Event ID."""

    APPLICATION_ACTIVITY = Code("110100", DCM, "Application Activity")
    AUDIT_LOG_USED = Code("110101", DCM, "Audit Log Used")
    BEGIN_TRANSFERRING = Code("110102", DCM, "Begin Transferring DICOM Instances")
    INSTANCES_ACCESSED = Code("110103", DCM, "DICOM Instances Accessed")
    INSTANCES_TRANSFERRED = Code("110104", DCM, "DICOM Instances Transferred")
    EXPORT = Code("110106", DCM, "Export")
    NETWORK_ENTRY = Code("110108", DCM, "Network Entry")
    PROCEDURE_RECORD = Code("110111", DCM, "Procedure Record")
    QUERY = Code("110112", DCM, "Query")
    SECURITY_ALERT = Code("110113", DCM, "Security Alert")
    USER_AUTHENTICATION = Code("110114", DCM, "User Authentication")


class EventTypeCode:
    """DCID 401 Audit Event Type Code (the ones pacsflow uses)."""

    APPLICATION_START = Code("110120", DCM, "Application Start")
    APPLICATION_STOP = Code("110121", DCM, "Application Stop")
    LOGIN = Code("110122", DCM, "Login")
    LOGOUT = Code("110123", DCM, "Logout")
    NODE_AUTHENTICATION = Code("110126", DCM, "Node Authentication")
    SOFTWARE_CONFIGURATION = Code("110131", DCM, "Software Configuration")


class RoleID:
    """DCID 402 Audit Active Participant Role ID Code."""

    APPLICATION = Code("110150", DCM, "Application")
    APPLICATION_LAUNCHER = Code("110151", DCM, "Application Launcher")
    DESTINATION = Code("110152", DCM, "Destination Role ID")
    SOURCE = Code("110153", DCM, "Source Role ID")
    DESTINATION_MEDIA = Code("110154", DCM, "Destination Media")


class ObjectIDType:
    """ParticipantObjectIDTypeCode values (RFC 3881 5.5.4 and DCID 404)."""

    PATIENT_NUMBER = Code("2", RFC_3881, "Patient Number")
    URI = Code("12", RFC_3881, "URI")
    STUDY_INSTANCE_UID = Code("110180", DCM, "Study Instance UID")
    NODE_ID = Code("110182", DCM, "Node ID")


class EventAction(StrEnum):
    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class Outcome(IntEnum):
    SUCCESS = 0
    MINOR_FAILURE = 4
    SERIOUS_FAILURE = 8
    MAJOR_FAILURE = 12


class NetworkAccessPointType(IntEnum):
    MACHINE_NAME = 1
    IP_ADDRESS = 2


class ObjectType(IntEnum):
    PERSON = 1
    SYSTEM_OBJECT = 2


class ObjectRole(IntEnum):
    PATIENT = 1
    REPORT = 3
    SECURITY_RESOURCE = 13


_IPV4_OR_6 = re.compile(r"^(\d{1,3}(\.\d{1,3}){3}|[0-9A-Fa-f:]*:[0-9A-Fa-f:.]*)$")


def network_access_point(address: str) -> tuple[str, NetworkAccessPointType]:
    """NetworkAccessPointID and its type code for a host name or an IP address."""
    kind = (
        NetworkAccessPointType.IP_ADDRESS
        if _IPV4_OR_6.match(address)
        else NetworkAccessPointType.MACHINE_NAME
    )
    return address, kind


@dataclass(frozen=True)
class ActiveParticipant:
    user_id: str
    user_is_requestor: bool
    role: Code | None = None
    alternative_user_id: str = ""
    user_name: str = ""
    network_access_point_id: str = ""
    more_roles: tuple[Code, ...] = ()  # further RoleIDCodes (a console user's roles)

    def __post_init__(self) -> None:
        if not self.user_id:
            raise ValueError("ActiveParticipant.user_id is required")


@dataclass(frozen=True)
class SopClassCount:
    sop_class_uid: str
    number_of_instances: int


@dataclass(frozen=True)
class ParticipantObject:
    object_id: str
    id_type: Code
    object_type: ObjectType
    role: ObjectRole
    name: str = ""
    details: tuple[tuple[str, str], ...] = ()
    sop_classes: tuple[SopClassCount, ...] = ()

    def __post_init__(self) -> None:
        if not self.object_id:
            raise ValueError(f"ParticipantObject.object_id is required ({self.id_type.meaning})")


def patient(patient_id: str, issuer_of_patient_id: str = "") -> ParticipantObject:
    """The patient as PS3.15 A.5.3 wants it: type 1 person, role 1 patient, ID type 2, the
    Patient ID in HL7 CX form (``ID^^^ISSUER``)."""
    object_id = f"{patient_id}^^^{issuer_of_patient_id}" if issuer_of_patient_id else patient_id
    return ParticipantObject(
        object_id, ObjectIDType.PATIENT_NUMBER, ObjectType.PERSON, ObjectRole.PATIENT
    )


def study(study_instance_uid: str, sop_classes: Sequence[SopClassCount] = ()) -> ParticipantObject:
    """The study: type 2 system object, role 3 report, ID type 110180 Study Instance UID."""
    return ParticipantObject(
        study_instance_uid,
        ObjectIDType.STUDY_INSTANCE_UID,
        ObjectType.SYSTEM_OBJECT,
        ObjectRole.REPORT,
        sop_classes=tuple(sop_classes),
    )


@dataclass(frozen=True)
class AuditMessage:
    event_id: Code
    action: EventAction
    outcome: Outcome
    event_time: datetime
    participants: tuple[ActiveParticipant, ...]
    audit_source_id: str
    event_types: tuple[Code, ...] = ()
    outcome_description: str = ""
    objects: tuple[ParticipantObject, ...] = ()
    audit_enterprise_site_id: str = ""
    audit_source_type: int = 4  # 4: application server process (RFC 3881 5.4.3)

    def __post_init__(self) -> None:
        if self.event_time.tzinfo is None:
            raise ValueError("AuditMessage.event_time must be timezone-aware")
        if not self.participants:
            raise ValueError("AuditMessage.participants: at least one ActiveParticipant")
        if not self.audit_source_id:
            raise ValueError("AuditMessage.audit_source_id is required")

    @property
    def requestor(self) -> str:
        """UserID of the requesting participant (the first one when none is marked)."""
        for participant in self.participants:
            if participant.user_is_requestor:
                return participant.user_id
        return self.participants[0].user_id

    def to_xml(self) -> str:
        root = ET.Element("AuditMessage")
        event = ET.SubElement(
            root,
            "EventIdentification",
            EventActionCode=self.action.value,
            EventDateTime=self.event_time.astimezone(UTC).isoformat(timespec="milliseconds"),
            EventOutcomeIndicator=str(int(self.outcome)),
        )
        _coded(event, "EventID", self.event_id)
        for event_type in self.event_types:
            _coded(event, "EventTypeCode", event_type)
        if self.outcome_description:
            ET.SubElement(event, "EventOutcomeDescription").text = self.outcome_description
        for participant in self.participants:
            attributes = {"UserID": participant.user_id}
            if participant.alternative_user_id:
                attributes["AlternativeUserID"] = participant.alternative_user_id
            if participant.user_name:
                attributes["UserName"] = participant.user_name
            attributes["UserIsRequestor"] = "true" if participant.user_is_requestor else "false"
            if participant.network_access_point_id:
                point, kind = network_access_point(participant.network_access_point_id)
                attributes["NetworkAccessPointID"] = point
                attributes["NetworkAccessPointTypeCode"] = str(int(kind))
            element = ET.SubElement(root, "ActiveParticipant", attributes)
            for role in (participant.role, *participant.more_roles):
                if role is not None:
                    _coded(element, "RoleIDCode", role)
        source_attributes = {"AuditSourceID": self.audit_source_id}
        if self.audit_enterprise_site_id:
            source_attributes["AuditEnterpriseSiteID"] = self.audit_enterprise_site_id
        source = ET.SubElement(root, "AuditSourceIdentification", source_attributes)
        ET.SubElement(source, "AuditSourceTypeCode", csd_code=str(self.audit_source_type))
        for item in self.objects:
            element = ET.SubElement(
                root,
                "ParticipantObjectIdentification",
                ParticipantObjectID=item.object_id,
                ParticipantObjectTypeCode=str(int(item.object_type)),
                ParticipantObjectTypeCodeRole=str(int(item.role)),
            )
            _coded(element, "ParticipantObjectIDTypeCode", item.id_type)
            if item.name:
                ET.SubElement(element, "ParticipantObjectName").text = item.name
            for detail_type, value in item.details:
                # The schema types the value as base64Binary.
                encoded = base64.b64encode(value.encode("utf-8")).decode("ascii")
                ET.SubElement(element, "ParticipantObjectDetail", type=detail_type, value=encoded)
            for count in item.sop_classes:
                ET.SubElement(
                    element,
                    "SOPClass",
                    UID=count.sop_class_uid,
                    NumberOfInstances=str(count.number_of_instances),
                )
        text = ET.tostring(root, encoding="unicode").replace("csd_code=", "csd-code=")
        check_audit_xml(text)
        return text


def _coded(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.set("csd-code", code.code)
    element.set("codeSystemName", code.scheme)
    element.set("originalText", code.meaning)
    return element


class AuditXmlError(ValueError):
    """An AuditMessage that does not have what PS3.15 A.5.1 requires."""


_ORDER = (
    "EventIdentification",
    "ActiveParticipant",
    "AuditSourceIdentification",
    "ParticipantObjectIdentification",
)
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def check_audit_xml(text: str) -> ET.Element:
    """Parse ``text`` and check the structure of the DICOM audit schema; returns the root.

    Raises :class:`AuditXmlError` naming the first problem: not well-formed, elements out of
    order or missing, a required attribute missing, a coded value without its three parts,
    an action, outcome or time the schema does not allow.
    """
    try:
        root = ET.fromstring(text)
    except ET.ParseError as error:
        raise AuditXmlError(f"not well-formed XML: {error}") from None
    if root.tag != "AuditMessage":
        raise AuditXmlError(f"root element is {root.tag}, not AuditMessage")
    tags = [child.tag for child in root]
    ranks = []
    for tag in tags:
        if tag not in _ORDER:
            raise AuditXmlError(f"unexpected element {tag}")
        ranks.append(_ORDER.index(tag))
    if ranks != sorted(ranks):
        raise AuditXmlError(f"elements out of schema order: {tags}")
    if tags.count("EventIdentification") != 1:
        raise AuditXmlError("exactly one EventIdentification is required")
    if "ActiveParticipant" not in tags:
        raise AuditXmlError("at least one ActiveParticipant is required")
    if tags.count("AuditSourceIdentification") < 1:
        raise AuditXmlError("AuditSourceIdentification is required")
    event = root.find("EventIdentification")
    assert event is not None
    _require(event, "EventActionCode", "EventDateTime", "EventOutcomeIndicator")
    if event.get("EventActionCode") not in {action.value for action in EventAction}:
        raise AuditXmlError(f"EventActionCode {event.get('EventActionCode')!r} is not C/R/U/D/E")
    if event.get("EventOutcomeIndicator") not in {"0", "4", "8", "12"}:
        raise AuditXmlError(f"EventOutcomeIndicator {event.get('EventOutcomeIndicator')!r}")
    if not _DATETIME.match(event.get("EventDateTime", "")):
        raise AuditXmlError(f"EventDateTime {event.get('EventDateTime')!r} is not xs:dateTime")
    event_ids = event.findall("EventID")
    if len(event_ids) != 1:
        raise AuditXmlError("EventIdentification needs exactly one EventID")
    for coded in [*event_ids, *event.findall("EventTypeCode")]:
        _check_coded(coded)
    for participant in root.findall("ActiveParticipant"):
        _require(participant, "UserID", "UserIsRequestor")
        if participant.get("UserIsRequestor") not in ("true", "false"):
            raise AuditXmlError("UserIsRequestor must be true or false")
        for coded in participant.findall("RoleIDCode"):
            _check_coded(coded)
    for source in root.findall("AuditSourceIdentification"):
        _require(source, "AuditSourceID")
    for item in root.findall("ParticipantObjectIdentification"):
        _require(item, "ParticipantObjectID")
        id_types = item.findall("ParticipantObjectIDTypeCode")
        if len(id_types) != 1:
            raise AuditXmlError("ParticipantObjectIdentification needs one IDTypeCode")
        _check_coded(id_types[0])
    return root


def object_details(element: ET.Element) -> dict[str, str]:
    """The ParticipantObjectDetail values of a ParticipantObjectIdentification, decoded."""
    return {
        detail.get("type", ""): base64.b64decode(detail.get("value", "")).decode("utf-8")
        for detail in element.findall("ParticipantObjectDetail")
    }


def _require(element: ET.Element, *attributes: str) -> None:
    for name in attributes:
        if not element.get(name):
            raise AuditXmlError(f"{element.tag} needs the attribute {name}")


def _check_coded(element: ET.Element) -> None:
    _require(element, "csd-code", "codeSystemName", "originalText")


# -- the messages pacsflow records (PS3.15 A.5.3) --------------------------------------------


@dataclass(frozen=True)
class Source:
    """Who sends the audit messages: AuditSourceID, the application's own participant."""

    audit_source_id: str
    application: str  # UserID of pacsflow's own process (e.g. its AE title or process name)
    host: str = ""
    enterprise_site_id: str = ""

    def participant(
        self, *, requestor: bool = False, role: Code | None = RoleID.APPLICATION
    ) -> ActiveParticipant:
        return ActiveParticipant(
            self.application,
            requestor,
            role,
            alternative_user_id=str(_process_id()),
            network_access_point_id=self.host,
        )


def _process_id() -> int:
    import os

    return os.getpid()


@dataclass(frozen=True)
class Event:
    """What every factory needs besides its own parts."""

    source: Source
    time: datetime = field(default_factory=lambda: datetime.now(UTC))

    def message(self, **parts: object) -> AuditMessage:
        return AuditMessage(
            event_time=self.time,
            audit_source_id=self.source.audit_source_id,
            audit_enterprise_site_id=self.source.enterprise_site_id,
            **parts,  # type: ignore[arg-type]
        )


def _person(user: str, host: str, role: Code | None = None) -> ActiveParticipant:
    return ActiveParticipant(user, True, role, network_access_point_id=host)


def user_authentication(
    event: Event,
    *,
    user: str,
    host: str,
    login: bool = True,
    success: bool = True,
    detail: str = "",
) -> AuditMessage:
    """A.5.3.11 User Authentication: Login (110122) or Logout (110123), failure = 4."""
    return event.message(
        event_id=EventID.USER_AUTHENTICATION,
        event_types=(EventTypeCode.LOGIN if login else EventTypeCode.LOGOUT,),
        action=EventAction.EXECUTE,
        outcome=Outcome.SUCCESS if success else Outcome.MINOR_FAILURE,
        outcome_description=detail,
        participants=(_person(user, host), event.source.participant()),
    )


def _patient_and_study(
    patient_id: str, issuer: str, study_instance_uid: str, sop_classes: Sequence[SopClassCount] = ()
) -> tuple[ParticipantObject, ...]:
    objects = [study(study_instance_uid, sop_classes)]
    if patient_id:
        objects.append(patient(patient_id, issuer))
    return tuple(objects)


def instances_accessed(
    event: Event,
    *,
    user: str,
    host: str,
    study_instance_uid: str,
    patient_id: str,
    issuer_of_patient_id: str = "",
    action: EventAction = EventAction.READ,
    event_type: Code | None = None,
    roles: Sequence[Code] = (),
) -> AuditMessage:
    """A.5.3.4 DICOM Instances Accessed (110103): a user viewed (R) or changed (U) a study."""
    return event.message(
        event_id=EventID.INSTANCES_ACCESSED,
        event_types=(event_type,) if event_type else (),
        action=action,
        outcome=Outcome.SUCCESS,
        participants=(
            ActiveParticipant(
                user,
                True,
                roles[0] if roles else None,
                network_access_point_id=host,
                more_roles=tuple(roles[1:]),
            ),
            event.source.participant(),
        ),
        objects=_patient_and_study(patient_id, issuer_of_patient_id, study_instance_uid),
    )


def exported(
    event: Event,
    *,
    user: str,
    host: str,
    destination: str,
    study_instance_uid: str,
    patient_id: str,
    issuer_of_patient_id: str = "",
    success: bool = True,
    event_type: Code | None = None,
    to_media: bool = True,
) -> AuditMessage:
    """A.5.3.6 Export (110106, action R): data left pacsflow to ``destination``, a file or
    medium (Destination Media) or, ``to_media=False``, a remote system (Destination)."""
    return event.message(
        event_id=EventID.EXPORT,
        event_types=(event_type,) if event_type else (),
        action=EventAction.READ,
        outcome=Outcome.SUCCESS if success else Outcome.MINOR_FAILURE,
        participants=(
            _person(user, host, RoleID.SOURCE),
            ActiveParticipant(
                destination, False, RoleID.DESTINATION_MEDIA if to_media else RoleID.DESTINATION
            ),
        ),
        objects=_patient_and_study(patient_id, issuer_of_patient_id, study_instance_uid),
    )


def instances_transferred(
    event: Event,
    *,
    action: EventAction,
    source_user: str,
    source_host: str,
    destination_user: str,
    destination_host: str,
    requestor_is_source: bool,
    studies: Sequence[tuple[str, Sequence[SopClassCount]]],
    patients: Sequence[tuple[str, str]],
    success: bool = True,
    detail: str = "",
    begin: bool = False,
) -> AuditMessage:
    """A.5.3.5 DICOM Instances Transferred (110104), or A.5.3.3 Begin Transferring (110102):
    instances from ``source`` to ``destination`` (C when pacsflow received and created them,
    R when it sent them)."""
    objects = [study(uid, counts) for uid, counts in studies]
    objects.extend(patient(patient_id, issuer) for patient_id, issuer in patients if patient_id)
    return event.message(
        event_id=EventID.BEGIN_TRANSFERRING if begin else EventID.INSTANCES_TRANSFERRED,
        action=action,
        outcome=Outcome.SUCCESS if success else Outcome.MINOR_FAILURE,
        outcome_description=detail,
        participants=(
            ActiveParticipant(
                source_user,
                requestor_is_source,
                RoleID.SOURCE,
                alternative_user_id=f"AETITLE={source_user}",
                network_access_point_id=source_host,
            ),
            ActiveParticipant(
                destination_user,
                not requestor_is_source,
                RoleID.DESTINATION,
                alternative_user_id=f"AETITLE={destination_user}",
                network_access_point_id=destination_host,
            ),
        ),
        objects=tuple(objects),
    )


def node_authentication(
    event: Event,
    *,
    calling_ae_title: str,
    peer_host: str,
    called_ae_title: str,
    success: bool,
    detail: str = "",
) -> AuditMessage:
    """A.5.3.10 Security Alert (110113), Node Authentication (110126): a DICOM association
    accepted (0) or rejected (4) by the node's caller policy."""
    return event.message(
        event_id=EventID.SECURITY_ALERT,
        event_types=(EventTypeCode.NODE_AUTHENTICATION,),
        action=EventAction.EXECUTE,
        outcome=Outcome.SUCCESS if success else Outcome.MINOR_FAILURE,
        outcome_description=detail,
        participants=(
            event.source.participant(requestor=False),
            ActiveParticipant(
                calling_ae_title or "(none)",
                True,
                alternative_user_id=f"AETITLE={calling_ae_title}",
                network_access_point_id=peer_host,
            ),
        ),
        objects=(
            ParticipantObject(
                f"dicom://{called_ae_title}@{event.source.host or 'localhost'}",
                ObjectIDType.URI,
                ObjectType.SYSTEM_OBJECT,
                ObjectRole.SECURITY_RESOURCE,
                details=(("CallingAETitle", calling_ae_title), ("PeerHost", peer_host)),
            ),
        ),
    )


def connection_refused(event: Event, *, peer_host: str, service: str, detail: str) -> AuditMessage:
    """A.5.3.10 Security Alert (110113), Node Authentication (110126): a connection refused
    before any association or message, a failed TLS handshake above all (IHE ATNA's
    "node authentication failure"). ``service`` names the listener (``dicom+tls://...``)."""
    return event.message(
        event_id=EventID.SECURITY_ALERT,
        event_types=(EventTypeCode.NODE_AUTHENTICATION,),
        action=EventAction.EXECUTE,
        outcome=Outcome.MINOR_FAILURE,
        outcome_description=detail,
        participants=(
            event.source.participant(requestor=False),
            ActiveParticipant(peer_host or "(unknown)", True, network_access_point_id=peer_host),
        ),
        objects=(
            ParticipantObject(
                service,
                ObjectIDType.URI,
                ObjectType.SYSTEM_OBJECT,
                ObjectRole.SECURITY_RESOURCE,
                details=(("PeerHost", peer_host),),
            ),
        ),
    )


def application_activity(
    event: Event,
    *,
    start: bool,
    user: str,
    settings_digest: str,
    config_uri: str,
) -> AuditMessage:
    """A.5.3.1 Application Activity (110100): pacsflow started (110120) or stopped (110121),
    with the digest of the settings it runs with."""
    return event.message(
        event_id=EventID.APPLICATION_ACTIVITY,
        event_types=(EventTypeCode.APPLICATION_START if start else EventTypeCode.APPLICATION_STOP,),
        action=EventAction.EXECUTE,
        outcome=Outcome.SUCCESS,
        participants=(
            event.source.participant(requestor=False),
            ActiveParticipant(user, True, RoleID.APPLICATION_LAUNCHER),
        ),
        objects=(_configuration(config_uri, settings_digest),),
    )


def configuration_changed(
    event: Event,
    *,
    user: str,
    settings_digest: str,
    previous_digest: str,
    config_uri: str,
) -> AuditMessage:
    """A.5.3.10 Security Alert (110113), Software Configuration (110131): the settings differ
    from those of the last start."""
    return event.message(
        event_id=EventID.SECURITY_ALERT,
        event_types=(EventTypeCode.SOFTWARE_CONFIGURATION,),
        action=EventAction.EXECUTE,
        outcome=Outcome.SUCCESS,
        outcome_description="settings changed since the last start",
        participants=(
            event.source.participant(requestor=False),
            ActiveParticipant(user, True, RoleID.APPLICATION_LAUNCHER),
        ),
        objects=(_configuration(config_uri, settings_digest, previous_digest),),
    )


def _configuration(uri: str, digest: str, previous: str = "") -> ParticipantObject:
    details = [("SettingsDigest", digest)]
    if previous:
        details.append(("PreviousSettingsDigest", previous))
    return ParticipantObject(
        uri,
        ObjectIDType.URI,
        ObjectType.SYSTEM_OBJECT,
        ObjectRole.SECURITY_RESOURCE,
        name="pacsflow settings",
        details=tuple(details),
    )


def audit_log_used(event: Event, *, user: str, host: str, log_uri: str) -> AuditMessage:
    """A.5.3.2 Audit Log Used (110101, action R): someone read the audit trail."""
    return event.message(
        event_id=EventID.AUDIT_LOG_USED,
        action=EventAction.READ,
        outcome=Outcome.SUCCESS,
        participants=(_person(user, host), event.source.participant()),
        objects=(
            ParticipantObject(
                log_uri,
                ObjectIDType.URI,
                ObjectType.SYSTEM_OBJECT,
                ObjectRole.SECURITY_RESOURCE,
                name="Security Audit Log",
            ),
        ),
    )


def finding_acknowledged(
    event: Event,
    *,
    user: str,
    via: str,
    study_instance_uid: str,
    patient_id: str,
    issuer_of_patient_id: str = "",
) -> AuditMessage:
    """A.5.3.4 DICOM Instances Accessed (110103, action U): a user acknowledged a Critical
    finding of the study's AI result."""
    return event.message(
        event_id=EventID.INSTANCES_ACCESSED,
        event_types=(ACKNOWLEDGEMENT,),
        action=EventAction.UPDATE,
        outcome=Outcome.SUCCESS,
        outcome_description=f"Critical finding acknowledged via {via}",
        participants=(_person(user, ""), event.source.participant()),
        objects=_patient_and_study(patient_id, issuer_of_patient_id, study_instance_uid),
    )


def console_role(name: str) -> Code:
    """A console role (radiologist, it_admin, ...) as a RoleIDCode of pacsflow's own scheme."""
    return Code(name, "99PACSFLOW", name.replace("_", " ").title())


# pacsflow's own event type (private coding scheme): PS3.15 has none for acknowledging a result.
ACKNOWLEDGEMENT = Code("ACK", "99PACSFLOW", "Critical finding acknowledged")
