"""The escalation lifecycle: open, first notification, re-send and escalate, acknowledge (I/O).

``open_and_notify`` runs inside the flow's escalate step, right after inference: it records
each Critical finding (one row per idempotency key, claimed by the caller) and sends the first
notification at once, without waiting for Prefect scheduling or any other step. ``tick`` runs
in the escalation service: it delivers what the first attempt could not, and for every
notification still unacknowledged after the timeout it re-sends to everyone reached so far and
adds the next level (the backup). ``acknowledge`` records who and when and stops all of it.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pydicom import dcmread

from integrations.audit.trail import AuditTrail
from integrations.db.connection import Database
from integrations.db.escalations import Acknowledgement, EscalationRecord, EscalationStore
from integrations.db.patients import PatientStore
from integrations.db.store import StudyStore
from integrations.emr.identifiers import MrnRules
from integrations.errors import ConfigError
from integrations.escalation.channels import Channel, build_channels
from integrations.escalation.notification import Notification, ack_link, study_link
from integrations.escalation.rules import (
    ack_timeout,
    escalation_key,
    levels,
    route_finding,
)
from integrations.escalation.sender import Attempt, Delivery, channel_policy, deliver
from integrations.settings import Settings

log = logging.getLogger(__name__)

# DICOM attributes that name where the patient is, most specific first.
LOCATION_KEYWORDS = (
    "CurrentPatientLocation",
    "PatientInstitutionResidence",
    "InstitutionalDepartmentName",
)


@dataclass(frozen=True)
class CriticalFindingInput:
    """One Critical finding as inference reported it."""

    analyzer: str
    label: str
    probability: float
    code: str = ""  # "SCHEME:VALUE"
    tier_rule: str = ""
    clinical_use: bool = True  # False: every page says NOT FOR CLINICAL USE


@dataclass(frozen=True)
class StudyFacts:
    accession_number: str = ""
    modality: str = ""
    patient_id: str = ""
    patient_location: str = ""


@dataclass(frozen=True)
class NotifyOutcome:
    idempotency_key: str
    finding: str
    team: str
    delivered: bool
    channels: tuple[str, ...]
    first_notification_seconds: float | None
    late: bool


def header_location(paths: Sequence[str]) -> str:
    """The ward from the first readable instance header ('' when none says)."""
    for path in paths[:3]:
        try:
            dataset = dcmread(
                Path(path), stop_before_pixels=True, specific_tags=list(LOCATION_KEYWORDS)
            )
        except Exception:
            continue
        for keyword in LOCATION_KEYWORDS:
            value = str(dataset.get(keyword, "") or "").strip()
            if value:
                return value
    return ""


class EscalationEngine:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        channels: Mapping[str, Channel] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        self.settings = settings
        self.escalation = settings.escalation
        self.database = database
        self.store = EscalationStore(database)
        self.studies = StudyStore(database)
        self.audit = AuditTrail(database, settings)
        self.problem = ""
        if channels is None:
            try:
                channels = build_channels(settings, database)
            except ConfigError as error:
                # Still record every Critical finding (the service and monitoring see it
                # undelivered), but say loudly that nothing can be sent.
                self.problem = str(error)
                log.error("ALERT escalation channels unusable, nothing can be sent: %s", error)
                channels = {}
        self.channels = dict(channels)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.policy = channel_policy(self.escalation)

    # -- facts about the study ---------------------------------------------------------------

    def study_facts(self, study_instance_uid: str) -> StudyFacts:
        study = self.studies.study(study_instance_uid)
        if study is None:
            return StudyFacts()
        with self.database.connection() as conn:
            paths = [
                row["path"]
                for row in conn.execute(
                    "SELECT path FROM instances WHERE study_instance_uid = %s"
                    " ORDER BY received_at LIMIT 3",
                    (study_instance_uid,),
                )
            ]
        return StudyFacts(
            accession_number=study.accession_number,
            modality="/".join(study.modalities),
            patient_id=study.patient_id,
            patient_location=self.adt_location(study.patient_id, study.issuer_of_patient_id)
            or header_location(paths),
        )

    def adt_location(self, patient_id: str, issuer_of_patient_id: str) -> str:
        """Where the ADT feed says the patient is now: it follows transfers, while the images
        only say where the patient was scanned. '' when ADT never mentioned the patient, or
        after discharge."""
        rules = MrnRules.from_settings(self.settings.mrn)
        resolved = PatientStore(self.database, rules).resolve(
            str(rules.dicom_key(patient_id, issuer_of_patient_id))
        )
        return resolved.context.location.display if resolved else ""

    # -- the first notification, from the flow -------------------------------------------------

    def open_and_notify(
        self,
        *,
        study_instance_uid: str,
        generation: int,
        study_closed_at: datetime | None,
        findings: Sequence[CriticalFindingInput],
    ) -> list[NotifyOutcome]:
        """Record every new Critical finding and notify its team now. A finding escalated
        before (same study and label) is skipped: retries and reruns notify once."""
        opened: list[EscalationRecord] = []
        for finding in findings:
            route = route_finding(self.escalation, finding.label, finding.code, finding.analyzer)
            record = self.store.open(
                idempotency_key=escalation_key(study_instance_uid, finding.label),
                study_instance_uid=study_instance_uid,
                generation=generation,
                analyzer=finding.analyzer,
                finding=finding.label,
                finding_code=finding.code,
                tier="Critical",
                tier_rule=finding.tier_rule,
                probability=finding.probability,
                clinical_use=finding.clinical_use,
                team=route.team if route else "",
                team_rule=route.rule if route else "",
                ack_token=secrets.token_urlsafe(24),
                study_closed_at=study_closed_at,
                claimed_by=self.name,
                claim_seconds=self.escalation.claim_seconds,
            )
            if record is None:
                log.info(
                    "study %s: %s escalated before; not notifying again",
                    study_instance_uid,
                    finding.label,
                )
                continue
            if route is None:
                log.error(
                    "ALERT study %s: Critical finding %s matches no escalation rule and no"
                    " default_team is configured: nobody is notified",
                    study_instance_uid,
                    finding.label,
                )
                continue
            opened.append(record)
        if not opened:
            return []
        facts = self.study_facts(study_instance_uid)
        if len(opened) == 1:
            return [self.notify(opened[0], level=0, round=0, facts=facts)]
        with ThreadPoolExecutor(max_workers=len(opened), thread_name_prefix="escalate") as pool:
            return list(
                pool.map(lambda record: self.notify(record, level=0, round=0, facts=facts), opened)
            )

    # -- one notification round ---------------------------------------------------------------

    def notify(
        self, record: EscalationRecord, *, level: int, round: int, facts: StudyFacts | None = None
    ) -> NotifyOutcome:
        """Send to everyone from level 0 up to ``level`` (as the roster stands now)."""
        facts = facts or self.study_facts(record.study_instance_uid)
        now = datetime.now(UTC)
        team_levels = (
            levels(self.escalation, record.team, now)
            if record.team in self.escalation.teams
            else ()
        )
        if not team_levels:
            log.error(
                "ALERT escalation %s (%s): team %r has nobody on call and no backups now",
                record.idempotency_key,
                record.finding,
                record.team,
            )
            self.store.record_undelivered(
                record.idempotency_key,
                level=level if record.state == "open" else record.level,
                round=round if record.state == "open" else record.round,
                retry_in_seconds=self.escalation.undelivered_retry_seconds,
            )
            return NotifyOutcome(
                record.idempotency_key, record.finding, record.team, False, (), None, False
            )
        level = min(level, len(team_levels) - 1)
        reached = team_levels[: level + 1]
        team = self.escalation.teams[record.team]
        notification = Notification(
            idempotency_key=record.idempotency_key,
            level=level,
            level_label=reached[-1].label,
            round=round,
            team_id=record.team,
            team_name=team.display_name or record.team,
            recipients=tuple(r for lvl in reached for r in lvl.recipients),
            study_instance_uid=record.study_instance_uid,
            accession_number=facts.accession_number,
            modality=facts.modality,
            patient_id=facts.patient_id,
            patient_location=facts.patient_location,
            finding=record.finding,
            finding_code=record.finding_code,
            probability=record.probability,
            tier=record.tier,
            rule=record.tier_rule,
            analyzer=record.analyzer,
            study_link=study_link(
                self.escalation.study_link_template,
                record.study_instance_uid,
                facts.accession_number,
            ),
            ack_link=ack_link(self.escalation.base_url, record.ack_token or ""),
            ack_token=record.ack_token or "",
            study_closed_at=record.study_closed_at,
            issued_at=now,
            clinical_use=record.clinical_use,
            include_identifiers=self.escalation.include_identifiers,
        )
        delivered_record: list[EscalationRecord] = []
        lock = threading.Lock()

        def on_attempt(attempt: Attempt) -> None:
            self.store.record_attempt(
                record.idempotency_key,
                level=level,
                round=round,
                channel=attempt.channel,
                attempt=attempt.attempt,
                recipients=[attempt.target] if attempt.target else [],
                outcome=attempt.outcome,
                detail=attempt.detail,
                started_at=attempt.started_at,
            )
            if attempt.outcome != "delivered":
                log.warning(
                    "escalation %s: %s %s attempt %d %s: %s",
                    record.idempotency_key,
                    attempt.channel,
                    attempt.target,
                    attempt.attempt,
                    attempt.outcome,
                    attempt.detail,
                )
                return
            with lock:
                if delivered_record:
                    return
                delivered_record.append(
                    self.store.record_delivered(
                        record.idempotency_key,
                        level=level,
                        round=round,
                        channel=attempt.channel,
                        next_action_in_seconds=ack_timeout(
                            self.escalation, record.team
                        ).total_seconds(),
                        deadline_seconds=self.escalation.first_notification_deadline_seconds,
                    )
                )

        delivery: Delivery = deliver(
            notification, self.channels, team.channels, team.delivery, self.policy, on_attempt
        )
        if not delivered_record:
            log.error(
                "ALERT escalation %s (%s, study %s): no channel of team %s delivered (%s);"
                " retrying in %.0f s and widening to the next level",
                record.idempotency_key,
                record.finding,
                record.study_instance_uid,
                record.team,
                "; ".join(f"{a.channel}: {a.detail}" for a in delivery.attempts[-4:]),
                self.escalation.undelivered_retry_seconds,
            )
            if record.state == "open":
                # nobody reached yet: the next try also reaches the next level
                retry_level, retry_round = min(level + 1, len(team_levels) - 1), round
            else:
                # a re-send round failed: the next pass repeats the same round
                retry_level, retry_round = record.level, record.round
            self.store.record_undelivered(
                record.idempotency_key,
                level=retry_level,
                round=retry_round,
                retry_in_seconds=self.escalation.undelivered_retry_seconds,
            )
            return NotifyOutcome(
                record.idempotency_key, record.finding, record.team, False, (), None, False
            )
        updated = delivered_record[0]
        late = bool(updated.first_notification_late) and updated.notifications_sent == 1
        if late:
            log.error(
                "ALERT late critical notification: study %s finding %s reached team %s %.1f s"
                " after study close (deadline %.0f s)",
                record.study_instance_uid,
                record.finding,
                record.team,
                updated.first_notification_seconds or -1.0,
                self.escalation.first_notification_deadline_seconds,
            )
            self.store.record_event(
                record.idempotency_key,
                "late",
                {
                    "seconds": updated.first_notification_seconds,
                    "deadline": self.escalation.first_notification_deadline_seconds,
                },
            )
        elif round == 0 and updated.notifications_sent == 1:
            log.info(
                "escalation %s: %s for study %s reached %s via %s %.2f s after study close",
                record.idempotency_key,
                record.finding,
                record.study_instance_uid,
                record.team,
                updated.first_channel,
                updated.first_notification_seconds or -1.0,
            )
        return NotifyOutcome(
            record.idempotency_key,
            record.finding,
            record.team,
            True,
            tuple(delivery.delivered_channels),
            updated.first_notification_seconds,
            late,
        )

    # -- the service's pass ------------------------------------------------------------------

    def tick(self) -> int:
        """Act on every due escalation once; return how many were handled."""
        due = self.store.claim_due(self.name, self.escalation.claim_seconds)
        if not due:
            return 0
        with ThreadPoolExecutor(max_workers=min(8, len(due)), thread_name_prefix="resend") as pool:
            list(pool.map(self._handle_due, due))
        return len(due)

    def _handle_due(self, record: EscalationRecord) -> None:
        try:
            if record.state == "open":
                # never delivered: the first attempt failed, or its sender died
                self.notify(record, level=record.level, round=record.round)
                return
            next_round = record.round + 1
            if next_round >= self.escalation.max_rounds:
                self.store.mark_exhausted(record.idempotency_key)
                log.critical(
                    "ALERT escalation %s (%s, study %s) unacknowledged after %d rounds;"
                    " no more re-sends",
                    record.idempotency_key,
                    record.finding,
                    record.study_instance_uid,
                    record.round + 1,
                )
                return
            team_levels = levels(self.escalation, record.team, datetime.now(UTC))
            next_level = min(record.level + 1, max(0, len(team_levels) - 1))
            self.store.record_event(
                record.idempotency_key,
                "escalated",
                {"from_level": record.level, "to_level": next_level, "round": next_round},
            )
            log.warning(
                "escalation %s (%s, study %s) not acknowledged: re-sending (round %d) to"
                " levels 0-%d",
                record.idempotency_key,
                record.finding,
                record.study_instance_uid,
                next_round,
                next_level,
            )
            self.notify(record, level=next_level, round=next_round)
        except Exception:
            log.exception("escalation %s: pass failed", record.idempotency_key)
            self.store.release(record.idempotency_key)

    # -- acknowledgement ---------------------------------------------------------------------

    def who(self, by: str) -> str:
        """A roster ID becomes "id (Name)"; anything else is kept as typed (trimmed)."""
        by = by.strip()[:200]
        person = self.escalation.people.get(by)
        return f"{by} ({person.name})" if person else by

    def acknowledge(self, token: str, by: str, via: str) -> Acknowledgement | None:
        result = self.store.acknowledge(token, by=self.who(by) or "unknown", via=via)
        if result is not None and result.newly_acknowledged:
            record = result.record
            log.info(
                "escalation %s (%s, study %s) acknowledged by %s via %s",
                record.idempotency_key,
                record.finding,
                record.study_instance_uid,
                record.acknowledged_by,
                via,
            )
            try:
                self.audit.finding_acknowledged(
                    record.study_instance_uid, user=record.acknowledged_by or "unknown", via=via
                )
            except Exception:  # the acknowledgement stands; the missing record is an alert
                log.exception("ALERT escalation %s: audit record failed", record.idempotency_key)
        return result


_engines: dict[int, tuple[object, EscalationEngine]] = {}
_engines_lock = threading.Lock()


def engine_for(owner: object, settings: Settings, database: Database) -> EscalationEngine:
    """One engine per owner (a task runtime), so HTTP connections stay warm across runs."""
    with _engines_lock:
        entry = _engines.get(id(owner))
        if entry is None or entry[0] is not owner:
            entry = (owner, EscalationEngine(settings, database))
            _engines[id(owner)] = entry
        return entry[1]


def forget_engines() -> None:
    with _engines_lock:
        _engines.clear()
