"""DICOM PS3.15 A.5 audit messages: what each builder writes, and what the checker refuses."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import pytest

from integrations.audit import message as m
from integrations.audit.syslog import (
    FrameError,
    format_message,
    octet_counted,
    parse_message,
    split_frames,
)
from integrations.settings import load_settings

WHEN = datetime(2026, 12, 1, 9, 30, 47, 123000, tzinfo=UTC)
EVENT = m.Event(m.Source("READING-ROOM-1", "pacsflow", "node1.hospital.example"), WHEN)


def root_of(message: m.AuditMessage) -> ET.Element:
    text = message.to_xml()
    return m.check_audit_xml(text)


def coded(element: ET.Element | None) -> tuple[str | None, str | None, str | None]:
    assert element is not None
    return element.get("csd-code"), element.get("codeSystemName"), element.get("originalText")


def objects(root: ET.Element) -> list[dict[str, str | None]]:
    return [
        {
            "id": item.get("ParticipantObjectID"),
            "type": item.get("ParticipantObjectTypeCode"),
            "role": item.get("ParticipantObjectTypeCodeRole"),
            "id_type": coded(item.find("ParticipantObjectIDTypeCode"))[0],
        }
        for item in root.findall("ParticipantObjectIdentification")
    ]


def test_login_failure_is_user_authentication_login_minor_failure() -> None:
    root = root_of(
        m.user_authentication(
            EVENT, user="alice", host="10.1.2.3", success=False, detail="invalid credentials"
        )
    )
    event = root.find("EventIdentification")
    assert event is not None
    assert coded(event.find("EventID")) == ("110114", "DCM", "User Authentication")
    assert coded(event.find("EventTypeCode")) == ("110122", "DCM", "Login")
    assert event.get("EventActionCode") == "E"
    assert event.get("EventOutcomeIndicator") == "4"
    assert event.get("EventDateTime") == "2026-12-01T09:30:47.123+00:00"
    assert event.findtext("EventOutcomeDescription") == "invalid credentials"
    user = root.findall("ActiveParticipant")[0]
    assert (user.get("UserID"), user.get("UserIsRequestor")) == ("alice", "true")
    assert (user.get("NetworkAccessPointID"), user.get("NetworkAccessPointTypeCode")) == (
        "10.1.2.3",
        "2",
    )
    source = root.find("AuditSourceIdentification")
    assert source is not None and source.get("AuditSourceID") == "READING-ROOM-1"
    assert [child.tag for child in root] == [
        "EventIdentification",
        "ActiveParticipant",
        "ActiveParticipant",
        "AuditSourceIdentification",
    ]


def test_logout_and_success() -> None:
    root = root_of(m.user_authentication(EVENT, user="bob", host="ward-pc-7", login=False))
    event = root.find("EventIdentification")
    assert event is not None
    assert coded(event.find("EventTypeCode"))[0] == "110123"
    assert event.get("EventOutcomeIndicator") == "0"
    # A host name is a machine name (type 1), an address type 2.
    assert root.findall("ActiveParticipant")[0].get("NetworkAccessPointTypeCode") == "1"


def test_view_names_the_patient_and_the_study_as_ps3_15_requires() -> None:
    root = root_of(
        m.instances_accessed(
            EVENT,
            user="dr.house",
            host="10.0.0.9",
            study_instance_uid="1.2.826.0.1.3680043.8.498.1",
            patient_id="MRN-4711",
            issuer_of_patient_id="HOSP",
        )
    )
    event = root.find("EventIdentification")
    assert event is not None
    assert coded(event.find("EventID"))[0] == "110103"
    assert event.get("EventActionCode") == "R"
    assert objects(root) == [
        {"id": "1.2.826.0.1.3680043.8.498.1", "type": "2", "role": "3", "id_type": "110180"},
        {"id": "MRN-4711^^^HOSP", "type": "1", "role": "1", "id_type": "2"},
    ]
    patient = root.findall("ParticipantObjectIdentification")[1]
    assert coded(patient.find("ParticipantObjectIDTypeCode")) == ("2", "RFC-3881", "Patient Number")


def test_association_transfer_has_source_and_destination_roles_and_sop_class_counts() -> None:
    root = root_of(
        m.instances_transferred(
            EVENT,
            action=m.EventAction.CREATE,
            source_user="MODALITY1",
            source_host="10.0.0.20",
            destination_user="PACSFLOW",
            destination_host="10.0.0.2",
            requestor_is_source=True,
            studies=[("1.2.3.4", [m.SopClassCount("1.2.840.10008.5.1.4.1.1.2", 120)])],
            patients=[("P1", "")],
        )
    )
    event = root.find("EventIdentification")
    assert event is not None
    assert coded(event.find("EventID"))[0] == "110104"
    assert event.get("EventActionCode") == "C"
    roles = [
        (p.get("UserID"), p.get("UserIsRequestor"), coded(p.find("RoleIDCode"))[0])
        for p in root.findall("ActiveParticipant")
    ]
    assert roles == [("MODALITY1", "true", "110153"), ("PACSFLOW", "false", "110152")]
    sop = root.find("ParticipantObjectIdentification/SOPClass")
    assert sop is not None
    assert (sop.get("UID"), sop.get("NumberOfInstances")) == ("1.2.840.10008.5.1.4.1.1.2", "120")
    assert objects(root)[1]["id"] == "P1"


def test_rejected_association_is_a_node_authentication_security_alert() -> None:
    root = root_of(
        m.node_authentication(
            EVENT,
            calling_ae_title="INTRUDER",
            peer_host="10.9.9.9",
            called_ae_title="PACSFLOW",
            success=False,
            detail="calling AE title INTRUDER is not allowed",
        )
    )
    event = root.find("EventIdentification")
    assert event is not None
    assert coded(event.find("EventID"))[0] == "110113"
    assert coded(event.find("EventTypeCode"))[0] == "110126"
    assert event.get("EventOutcomeIndicator") == "4"
    requestor = [p for p in root.findall("ActiveParticipant") if p.get("UserIsRequestor") == "true"]
    assert [p.get("AlternativeUserID") for p in requestor] == ["AETITLE=INTRUDER"]


def test_application_start_carries_the_settings_digest() -> None:
    root = root_of(
        m.application_activity(
            EVENT, start=True, user="pacs-admin", settings_digest="ab" * 32, config_uri="file:///x"
        )
    )
    event = root.find("EventIdentification")
    assert event is not None
    assert coded(event.find("EventID"))[0] == "110100"
    assert coded(event.find("EventTypeCode"))[0] == "110120"
    item = root.find("ParticipantObjectIdentification")
    assert item is not None
    assert m.object_details(item) == {"SettingsDigest": "ab" * 32}
    changed = root_of(
        m.configuration_changed(
            EVENT, user="x", settings_digest="1", previous_digest="2", config_uri="file:///x"
        )
    )
    assert coded(changed.find("EventIdentification/EventTypeCode"))[0] == "110131"


def test_reading_the_audit_log_is_itself_audited() -> None:
    root = root_of(m.audit_log_used(EVENT, user="it.admin", host="10.0.0.7", log_uri="/audit"))
    assert coded(root.find("EventIdentification/EventID"))[0] == "110101"
    assert objects(root) == [{"id": "/audit", "type": "2", "role": "13", "id_type": "12"}]
    item = root.find("ParticipantObjectIdentification")
    assert item is not None and item.findtext("ParticipantObjectName") == "Security Audit Log"


def test_text_is_escaped_and_times_are_utc() -> None:
    local = datetime(2026, 12, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    text = m.user_authentication(
        m.Event(EVENT.source, local), user='o"brien<&>', host="h", success=False, detail="<x>"
    ).to_xml()
    root = m.check_audit_xml(text)
    assert root.findall("ActiveParticipant")[0].get("UserID") == 'o"brien<&>'
    assert root.find("EventIdentification").get("EventDateTime").startswith("2026-12-01T09:30")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("<AuditMessage><EventIdentification", "well-formed"),
        ("<Other/>", "root element"),
        ("<AuditMessage/>", "EventIdentification"),
        (
            '<AuditMessage><EventIdentification EventActionCode="X"'
            ' EventDateTime="2026-01-01T00:00:00Z" EventOutcomeIndicator="0"/>'
            '<ActiveParticipant UserID="a" UserIsRequestor="true"/>'
            '<AuditSourceIdentification AuditSourceID="s"/></AuditMessage>',
            "EventActionCode",
        ),
        (
            '<AuditMessage><EventIdentification EventActionCode="E"'
            ' EventDateTime="2026-01-01T00:00:00Z" EventOutcomeIndicator="3">'
            '<EventID csd-code="110100" codeSystemName="DCM" originalText="x"/>'
            "</EventIdentification>"
            '<ActiveParticipant UserID="a" UserIsRequestor="true"/>'
            '<AuditSourceIdentification AuditSourceID="s"/></AuditMessage>',
            "EventOutcomeIndicator",
        ),
        (
            '<AuditMessage><EventIdentification EventActionCode="E"'
            ' EventDateTime="2026-01-01T00:00:00" EventOutcomeIndicator="0">'
            '<EventID csd-code="110100" codeSystemName="DCM" originalText="x"/>'
            "</EventIdentification>"
            '<ActiveParticipant UserID="a" UserIsRequestor="true"/>'
            '<AuditSourceIdentification AuditSourceID="s"/></AuditMessage>',
            "EventDateTime",
        ),
        (
            '<AuditMessage><EventIdentification EventActionCode="E"'
            ' EventDateTime="2026-01-01T00:00:00Z" EventOutcomeIndicator="0">'
            '<EventID csd-code="110100" codeSystemName="DCM"/>'
            "</EventIdentification>"
            '<ActiveParticipant UserID="a" UserIsRequestor="true"/>'
            '<AuditSourceIdentification AuditSourceID="s"/></AuditMessage>',
            "originalText",
        ),
        (
            '<AuditMessage><EventIdentification EventActionCode="E"'
            ' EventDateTime="2026-01-01T00:00:00Z" EventOutcomeIndicator="0">'
            '<EventID csd-code="110100" codeSystemName="DCM" originalText="x"/>'
            "</EventIdentification>"
            '<AuditSourceIdentification AuditSourceID="s"/>'
            '<ActiveParticipant UserID="a" UserIsRequestor="true"/></AuditMessage>',
            "order",
        ),
        (
            '<AuditMessage><EventIdentification EventActionCode="E"'
            ' EventDateTime="2026-01-01T00:00:00Z" EventOutcomeIndicator="0">'
            '<EventID csd-code="110100" codeSystemName="DCM" originalText="x"/>'
            "</EventIdentification>"
            '<ActiveParticipant UserID="a" UserIsRequestor="true"/>'
            '<AuditSourceIdentification AuditSourceID="s"/>'
            '<ParticipantObjectIdentification ParticipantObjectID="p"/></AuditMessage>',
            "IDTypeCode",
        ),
    ],
)
def test_checker_refuses_what_the_schema_does_not_allow(text: str, problem: str) -> None:
    with pytest.raises(m.AuditXmlError, match=problem):
        m.check_audit_xml(text)


def test_builders_refuse_missing_required_values() -> None:
    with pytest.raises(ValueError, match="user_id"):
        m.ActiveParticipant("", True)
    with pytest.raises(ValueError, match="timezone"):
        m.user_authentication(m.Event(EVENT.source, datetime(2026, 1, 1)), user="a", host="h")
    with pytest.raises(ValueError, match="object_id"):
        m.study("")


def test_syslog_header_is_the_ihe_one_and_frames_round_trip() -> None:
    xml = m.user_authentication(EVENT, user="alice", host="h", success=False).to_xml()
    data = format_message(
        xml,
        timestamp=WHEN,
        hostname="node1.hospital.example",
        app_name="pacsflow",
        procid="4242",
        msgid="IHE+RFC-3881",
        failure=True,
    )
    assert data.startswith(
        b"<84>1 2026-12-01T09:30:47.123Z node1.hospital.example pacsflow 4242 IHE+RFC-3881 - "
    )
    parsed = parse_message(data)
    assert (parsed.facility, parsed.severity, parsed.has_bom) == (10, 4, True)
    assert parsed.msg == xml
    ok = parse_message(
        format_message(
            xml, timestamp=WHEN, hostname="", app_name="a b", procid="1", msgid="DICOM+RFC3881"
        )
    )
    assert (ok.severity, ok.hostname, ok.app_name) == (5, "-", "ab")
    stream = octet_counted(data) + octet_counted("é".encode()) + b"17 partial"
    frames, rest = split_frames(stream)
    assert frames == [data, "é".encode()]
    assert rest == b"17 partial"
    with pytest.raises(FrameError):
        split_frames(b"<85>1 no length")


def test_audit_settings_keys() -> None:
    settings = load_settings(
        None,
        search=False,
        audit={
            "syslog_host": "arr.hospital.example",
            "syslog_port": 6514,
            "syslog_transport": "tcp",
            "audit_source_id": "PACSFLOW-1",
        },
    )
    assert settings.audit.syslog_transport == "tcp"
    assert settings.audit.enabled
    with pytest.raises(Exception, match="syslog_transport"):
        load_settings(None, search=False, audit={"syslog_transport": "relp"})
    with pytest.raises(Exception, match=r"audit\.syslog_hots"):
        load_settings(None, search=False, audit={"syslog_hots": "x"})
