"""Recording audited events: build the PS3.15 message, append it, queue it for syslog (I/O).

:class:`AuditTrail` is what the rest of pacsflow calls, one method per audited event: the
console (logins, views, exports), the DICOM node (associations), the senders (results to the
PACS and the EMR), the escalation engine (acknowledgements), ``pacsflow serve`` (start, stop,
changed settings). Each call writes one append-only record and its delivery row in one
transaction; ``pacsflow audit-sender`` sends it. With ``[audit] enabled = false`` nothing is
recorded. Nothing here logs patient data: log lines name the event kind and record id only.
"""

from __future__ import annotations

import hashlib
import logging
import socket
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from integrations.audit import message as m
from integrations.db.audit import AuditRecordRow, AuditStore
from integrations.db.connection import Database
from integrations.db.outbox import OutboxItem
from integrations.db.results_outbox import ResultDelivery
from integrations.settings import Settings

log = logging.getLogger(__name__)


def settings_digest(settings: Settings) -> str:
    """SHA-256 of the effective settings (what a configuration change changes)."""
    text = settings.model_dump_json(exclude={"config_path"})
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class AuditTrail:
    """Records audit events. Cheap to build; share one per process where convenient.

    For the console: ``user_login(user, host, success=..., detail=...)`` on every login
    attempt (LDAP or SAML, ``detail`` the reason of a failure, never the password),
    ``user_logout``, ``study_viewed(user, host, study_instance_uid)`` on every page or API
    answer that shows a study's AI result, ``exported(user, host, study_instance_uid,
    destination=...)`` on every download, ``audit_log_used(user, host)`` when the audit search
    is read, and ``search(...)`` for that search (no patient data in what it returns).
    """

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.store = AuditStore(database)
        audit = settings.audit
        host = socket.gethostname()
        self.source = m.Source(
            audit_source_id=audit.audit_source_id or host,
            application=audit.app_name,
            host=host,
            enterprise_site_id=audit.audit_enterprise_site_id,
        )

    @property
    def enabled(self) -> bool:
        return self.settings.audit.enabled

    def _event(self) -> m.Event:
        return m.Event(self.source, datetime.now(UTC))

    def record(
        self, message: m.AuditMessage, *, kind: str, study_instance_uid: str | None = None
    ) -> int | None:
        """Append ``message`` and queue it for the collector; the record's id (None: disabled)."""
        if not self.enabled:
            return None
        record_id = self.store.append(
            event_time=message.event_time,
            event_id=message.event_id.code,
            event_type=message.event_types[0].code if message.event_types else "",
            action=message.action.value,
            outcome=int(message.outcome),
            user_id=message.requestor,
            kind=kind,
            study_instance_uid=study_instance_uid,
            message=message.to_xml(),
            queue=True,
        )
        log.debug("audit record %d (%s) appended", record_id, kind)
        return record_id

    def _patient(self, study_instance_uid: str) -> tuple[str, str]:
        return self.store.patient_of(study_instance_uid)

    def _about_study(
        self,
        build: Callable[..., m.AuditMessage],
        study_instance_uid: str,
        *,
        kind: str,
        **fields: Any,
    ) -> int | None:
        """Record an event whose participants are one study and its patient."""
        patient_id, issuer = self._patient(study_instance_uid)
        return self.record(
            build(
                self._event(),
                study_instance_uid=study_instance_uid,
                patient_id=patient_id,
                issuer_of_patient_id=issuer,
                **fields,
            ),
            kind=kind,
            study_instance_uid=study_instance_uid,
        )

    # -- the console ---------------------------------------------------------------------------

    def user_login(self, user: str, host: str, *, success: bool, detail: str = "") -> int | None:
        """A login attempt (User Authentication / Login); ``detail`` says why it failed."""
        return self.record(
            m.user_authentication(
                self._event(), user=user, host=host, login=True, success=success, detail=detail
            ),
            kind="login" if success else "login_failed",
        )

    def user_logout(self, user: str, host: str) -> int | None:
        return self.record(
            m.user_authentication(self._event(), user=user, host=host, login=False),
            kind="logout",
        )

    def study_viewed(
        self, user: str, host: str, study_instance_uid: str, *, roles: Sequence[str] = ()
    ) -> int | None:
        """A user saw a study's AI result (DICOM Instances Accessed, read); ``roles`` are the
        console roles the user holds, written as the participant's RoleIDCodes."""
        return self._about_study(
            m.instances_accessed,
            study_instance_uid,
            kind="view",
            user=user,
            host=host,
            roles=[m.console_role(role) for role in roles],
        )

    def exported(
        self, user: str, host: str, study_instance_uid: str, *, destination: str = "download"
    ) -> int | None:
        """A user exported a study's result (an image, a report, a CSV) out of pacsflow."""
        return self._about_study(
            m.exported,
            study_instance_uid,
            kind="export",
            user=user,
            host=host,
            destination=destination,
        )

    def audit_log_used(self, user: str, host: str, *, log_uri: str = "/audit") -> int | None:
        """Someone read the audit trail (the console's audit search)."""
        return self.record(
            m.audit_log_used(self._event(), user=user, host=host, log_uri=log_uri),
            kind="audit_log_used",
        )

    # -- the DICOM node ------------------------------------------------------------------------

    def association_rejected(
        self, *, calling_ae_title: str, called_ae_title: str, peer_host: str, reason: str
    ) -> int | None:
        return self.record(
            m.node_authentication(
                self._event(),
                calling_ae_title=calling_ae_title,
                called_ae_title=called_ae_title,
                peer_host=peer_host,
                success=False,
                detail=reason,
            ),
            kind="association_rejected",
        )

    def connection_refused(
        self, *, peer_host: str, service: str, reason: str, kind: str = "connection_refused"
    ) -> int | None:
        """A connection a listener refused or ended before any association or message (limits,
        negotiation or first-message deadline, oversized data, a failed TLS handshake), or
        (``kind="hl7_sender_refused"``) an HL7 sender the listener does not accept: Security
        Alert, Node Authentication, failure. Once per connection."""
        return self.record(
            m.connection_refused(
                self._event(), peer_host=peer_host, service=service, detail=reason
            ),
            kind=kind,
        )

    def instance_refused(
        self,
        *,
        calling_ae_title: str,
        called_ae_title: str,
        peer_host: str,
        reason: str,
        study_instance_uid: str = "",
        sop_class_uid: str = "",
    ) -> int | None:
        """One C-STORE the node answered with a failure status (DICOM Instances Transferred,
        create, failed); the study only when the node could read it."""
        studies = (
            [(study_instance_uid, [m.SopClassCount(sop_class_uid, 1)] if sop_class_uid else [])]
            if study_instance_uid
            else []
        )
        return self.record(
            m.instances_transferred(
                self._event(),
                action=m.EventAction.CREATE,
                source_user=calling_ae_title or "(unknown)",
                source_host=peer_host,
                destination_user=called_ae_title,
                destination_host=self.source.host,
                requestor_is_source=True,
                studies=studies,
                patients=[],
                success=False,
                detail=reason,
            ),
            kind="instance_refused",
            study_instance_uid=study_instance_uid or None,
        )

    def association_completed(
        self,
        *,
        calling_ae_title: str,
        called_ae_title: str,
        peer_host: str,
        node_host: str,
        studies: dict[str, dict[str, int]],
        patients: Sequence[tuple[str, str]],
        refused: int = 0,
    ) -> int | None:
        """An accepted association, at its end: the instances it brought (DICOM Instances
        Transferred, create), or, when it brought none, the successful Node Authentication."""
        if not studies:
            return self.record(
                m.node_authentication(
                    self._event(),
                    calling_ae_title=calling_ae_title,
                    called_ae_title=called_ae_title,
                    peer_host=peer_host,
                    success=True,
                    detail="association accepted",
                ),
                kind="association",
            )
        counted = [
            (uid, [m.SopClassCount(sop, n) for sop, n in sorted(classes.items())])
            for uid, classes in studies.items()
        ]
        return self.record(
            m.instances_transferred(
                self._event(),
                action=m.EventAction.CREATE,
                source_user=calling_ae_title,
                source_host=peer_host,
                destination_user=called_ae_title,
                destination_host=node_host,
                requestor_is_source=True,
                studies=counted,
                patients=patients,
                success=refused == 0,
                detail=f"{refused} instances refused" if refused else "",
            ),
            kind="association",
            study_instance_uid=next(iter(studies)) if len(studies) == 1 else None,
        )

    # -- results out ---------------------------------------------------------------------------

    def result_to_pacs(
        self,
        study_instance_uid: str,
        *,
        pacs_ae_title: str,
        pacs_host: str,
        sop_classes: dict[str, int],
    ) -> int | None:
        """Result objects stored to the PACS (DICOM Instances Transferred, read)."""
        patient_id, issuer = self._patient(study_instance_uid)
        return self.record(
            m.instances_transferred(
                self._event(),
                action=m.EventAction.READ,
                source_user=self.settings.node.ae_title,
                source_host=self.source.host,
                destination_user=pacs_ae_title,
                destination_host=pacs_host,
                requestor_is_source=True,
                studies=[
                    (
                        study_instance_uid,
                        [m.SopClassCount(sop, n) for sop, n in sorted(sop_classes.items())],
                    )
                ],
                patients=[(patient_id, issuer)],
            ),
            kind="result_pacs",
            study_instance_uid=study_instance_uid,
        )

    def result_to_emr(
        self, study_instance_uid: str | None, *, channel: str, destination: str
    ) -> int | None:
        """A result the EMR acknowledged (HL7 AA, FHIR 2xx): Export to ``destination``."""
        patient_id, issuer = self._patient(study_instance_uid) if study_instance_uid else ("", "")
        return self.record(
            m.exported(
                self._event(),
                user=self.source.application,
                host=self.source.host,
                destination=destination,
                study_instance_uid=study_instance_uid or "(none)",
                patient_id=patient_id,
                issuer_of_patient_id=issuer,
                event_type=m.Code(channel.upper(), "99PACSFLOW", f"Result sent by {channel}"),
                to_media=False,
            ),
            kind=f"result_{channel}",
            study_instance_uid=study_instance_uid,
        )

    def emr_delivery_hook(self, channel: str) -> Callable[[OutboxItem], None]:
        """For :attr:`OutboxSender.on_delivered` of the ``hl7``, ``hl7-ris`` or ``fhir`` sender."""
        channel, destination = self._emr_destination(channel)

        def delivered(item: OutboxItem) -> None:
            self.result_to_emr(item.study_instance_uid, channel=channel, destination=destination)

        return delivered

    def _emr_destination(self, channel: str) -> tuple[str, str]:
        """(channel as audited, destination) of the ``hl7``, ``hl7-ris`` or ``fhir`` sender."""
        if channel == "fhir":
            return channel, self.settings.fhir.base_url
        if channel == "hl7-ris":
            return "ris", f"mllp://{self.settings.ris.host}:{self.settings.ris.port}"
        return channel, f"mllp://{self.settings.emr.host}:{self.settings.emr.port}"

    def results_delivery_hook(self) -> Callable[[ResultDelivery], None]:
        """For :attr:`ResultsSender.on_delivered`: each result object the PACS stored."""
        pacs = self.settings.pacs

        def delivered(item: ResultDelivery) -> None:
            self.result_to_pacs(
                item.study_instance_uid,
                pacs_ae_title=pacs.ae_title,
                pacs_host=pacs.host,
                sop_classes={item.sop_class_uid: 1},
            )

        return delivered

    def delivery_failed(
        self,
        study_instance_uid: str | None,
        *,
        channel: str,
        destination: str,
        reason: str,
        sop_class_uid: str = "",
    ) -> int | None:
        """A delivery given up for good (refused by the peer, unrenderable, out of time):
        the result did not reach ``destination``. Once per outbox row."""
        patient_id, issuer = self._patient(study_instance_uid) if study_instance_uid else ("", "")
        if channel == "pacs":
            message = m.instances_transferred(
                self._event(),
                action=m.EventAction.READ,
                source_user=self.settings.node.ae_title,
                source_host=self.source.host,
                destination_user=destination,
                destination_host=destination,
                requestor_is_source=True,
                studies=[
                    (
                        study_instance_uid or "(none)",
                        [m.SopClassCount(sop_class_uid, 1)] if sop_class_uid else [],
                    )
                ],
                patients=[(patient_id, issuer)],
                success=False,
                detail=reason,
            )
        else:
            message = m.exported(
                self._event(),
                user=self.source.application,
                host=self.source.host,
                destination=destination,
                study_instance_uid=study_instance_uid or "(none)",
                patient_id=patient_id,
                issuer_of_patient_id=issuer,
                success=False,
                event_type=m.Code(channel.upper(), "99PACSFLOW", f"Result sent by {channel}"),
                to_media=False,
            )
        return self.record(message, kind="delivery_failed", study_instance_uid=study_instance_uid)

    def emr_failure_hook(self, channel: str) -> Callable[[OutboxItem, str], None]:
        """For :attr:`OutboxSender.on_failed` of the ``hl7``, ``hl7-ris`` or ``fhir`` sender."""
        channel, destination = self._emr_destination(channel)

        def failed(item: OutboxItem, reason: str) -> None:
            self.delivery_failed(
                item.study_instance_uid, channel=channel, destination=destination, reason=reason
            )

        return failed

    def results_failure_hook(self) -> Callable[[ResultDelivery, str], None]:
        """For :attr:`ResultsSender.on_failed`: each result object given up for good."""
        pacs = self.settings.pacs

        def failed(item: ResultDelivery, reason: str) -> None:
            self.delivery_failed(
                item.study_instance_uid,
                channel="pacs",
                destination=f"{pacs.ae_title}@{pacs.host}:{pacs.port}",
                reason=reason,
                sop_class_uid=item.sop_class_uid,
            )

        return failed

    def fhir_token_refused(self, *, token_url: str, reason: str) -> int | None:
        """The FHIR authorization server refused pacsflow's SMART token request (its client
        credentials): User Authentication, Login, failure. Once per refused attempt."""
        return self.record(
            m.user_authentication(
                self._event(),
                user=self.settings.fhir.client_id or "(no client id)",
                host=self.source.host,
                success=False,
                detail=reason,
            ),
            kind="fhir_token_refused",
        )

    def fhir_token_hook(self) -> Callable[[str, str], None]:
        """For :attr:`FhirClient.on_token_refused`."""

        def refused(token_url: str, reason: str) -> None:
            self.fhir_token_refused(token_url=token_url, reason=reason)

        return refused

    # -- escalation ----------------------------------------------------------------------------

    def finding_acknowledged(self, study_instance_uid: str, *, user: str, via: str) -> int | None:
        return self._about_study(
            m.finding_acknowledged, study_instance_uid, kind="acknowledgement", user=user, via=via
        )

    # -- the application -----------------------------------------------------------------------

    def application_started(self, user: str) -> tuple[int | None, int | None]:
        """pacsflow started (Application Activity, with the settings digest); when the digest
        differs from the last start's, also a Security Alert / Software Configuration.
        Returns the ids (start, change; None where nothing was recorded)."""
        digest = settings_digest(self.settings)
        uri = self.settings.config_path.as_uri() if self.settings.config_path else "env:PACSFLOW_"
        previous = self._last_digest()
        start = self.record(
            m.application_activity(
                self._event(), start=True, user=user, settings_digest=digest, config_uri=uri
            ),
            kind="application_start",
        )
        change = None
        if previous is not None and previous != digest:
            change = self.record(
                m.configuration_changed(
                    self._event(),
                    user=user,
                    settings_digest=digest,
                    previous_digest=previous,
                    config_uri=uri,
                ),
                kind="configuration_change",
            )
        return start, change

    def application_stopped(self, user: str) -> int | None:
        uri = self.settings.config_path.as_uri() if self.settings.config_path else "env:PACSFLOW_"
        return self.record(
            m.application_activity(
                self._event(),
                start=False,
                user=user,
                settings_digest=settings_digest(self.settings),
                config_uri=uri,
            ),
            kind="application_stop",
        )

    def _last_digest(self) -> str | None:
        text = self.store.last_message("application_start")
        if text is None:
            return None
        root = m.check_audit_xml(text)
        for item in root.findall("ParticipantObjectIdentification"):
            digest = m.object_details(item).get("SettingsDigest")
            if digest:
                return digest
        return None

    # -- the IT view ---------------------------------------------------------------------------

    def search(self, **criteria: object) -> list[AuditRecordRow]:
        """Records without their messages, newest first (see :meth:`AuditStore.search`)."""
        return self.store.search(**criteria)  # type: ignore[arg-type]
