"""Patient context from HL7 ADT in PostgreSQL: store each message, apply it once, merge (I/O).

:meth:`PatientStore.receive` does in one transaction what the listener acknowledges: the
message is stored (``hl7_inbox``), applied to ``patient_context`` unless its control ID was
applied before, and, for an A40 merge, the old MRN's AI results (worklist rows, outbox
messages, later lookups) move to the surviving MRN. Nothing is acknowledged AA before that
transaction commits; a database that cannot commit makes the listener answer AR.

Concurrent messages about one patient are serialised by a transaction-level advisory lock
on the patient's key, so two connections cannot interleave an admit and a transfer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from integrations.db.connection import Database
from integrations.emr.context import PatientContext, PatientIdentifier, PersonName
from integrations.emr.identifiers import MatchKey, MrnRules
from integrations.errors import StoreError
from integrations.hl7.adt import AdtMessage
from integrations.hl7.adt_events import updated_context
from integrations.hl7.header import MessageHeader

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "pacsflow_emr_outbox"
_MAX_MERGE_HOPS = 16


@dataclass(frozen=True)
class ReceiveOutcome:
    """What happened to a received message."""

    state: str  # applied | ignored | rejected | duplicate
    inbox_id: int
    patient_key: str = ""


@dataclass(frozen=True)
class ResolvedContext:
    """A patient's context, found through merges; ``patient_key`` is the surviving key."""

    patient_key: str
    context: PatientContext


class PatientStore:
    def __init__(self, database: Database, rules: MrnRules) -> None:
        self.database = database
        self.rules = rules

    # -- receiving ----------------------------------------------------------------------------

    def receive(
        self,
        *,
        raw: bytes,
        header: MessageHeader | None,
        charset: str,
        peer: str,
        message: AdtMessage | None = None,
        error: str | None = None,
        ack_code: str,
    ) -> ReceiveOutcome:
        """Store a received message and apply it (unless rejected, ignored or a duplicate).

        Raises :class:`StoreError` when the database cannot store it (the caller answers AR).
        """
        try:
            with self.database.connection() as conn, conn.transaction():
                return self._receive(conn, raw, header, charset, peer, message, error, ack_code)
        except psycopg.Error as failure:
            raise StoreError(f"cannot store HL7 message: {type(failure).__name__}") from failure

    def _receive(
        self,
        conn: Any,
        raw: bytes,
        header: MessageHeader | None,
        charset: str,
        peer: str,
        message: AdtMessage | None,
        error: str | None,
        ack_code: str,
    ) -> ReceiveOutcome:
        columns = {
            "sending_application": header.sending_application if header else "",
            "sending_facility": header.sending_facility if header else "",
            "message_control_id": header.message_control_id if header else "",
            "message_type": header.message_type if header else "",
            "version_id": header.version_id if header else "",
            "charset": charset,
            "peer": peer,
            "raw": raw,
            "ack_code": ack_code,
            "error": error,
        }
        if message is None:
            row = conn.execute(
                _INSERT_INBOX.format(on_conflict=""),
                {**columns, "state": "rejected", "patient_key": ""},
            ).fetchone()
            return ReceiveOutcome("rejected", row["id"])
        mrn = self.rules.select_mrn(message.identifiers)
        if mrn is None:  # the listener checks this first; kept as a guard
            raise ValueError("PID-3 has no MRN")
        key = str(self.rules.hl7_key(mrn))
        state = "applied" if message.applied else "ignored"
        row = conn.execute(
            _INSERT_INBOX.format(on_conflict=_ON_CONFLICT_ONCE),
            {**columns, "state": state, "patient_key": key},
        ).fetchone()
        if row is None:
            row = conn.execute(
                _INSERT_INBOX.format(on_conflict=""),
                {**columns, "state": "duplicate", "patient_key": key},
            ).fetchone()
            return ReceiveOutcome("duplicate", row["id"], key)
        inbox_id = row["id"]
        if state == "ignored":
            return ReceiveOutcome(state, inbox_id, key)
        if message.event == "A40":
            self._merge(conn, message, mrn, key, inbox_id)
        else:
            current = self._load(conn, key, lock=True)
            context = updated_context(current, message, key, mrn)
            self._save(conn, context, inbox_id)
        conn.execute(_WAKE_HELD_RESULTS, {"key": key, "channel": OUTBOX_CHANNEL})
        return ReceiveOutcome(state, inbox_id, key)

    # -- merge (A40) ---------------------------------------------------------------------------

    def _merge(
        self, conn: Any, message: AdtMessage, mrn: PatientIdentifier, key: str, inbox_id: int
    ) -> None:
        prior = self.rules.select_mrn(message.prior_identifiers) or message.prior_identifiers[0]
        prior_key = str(self.rules.hl7_key(prior))
        for lock_key in sorted({key, prior_key}):
            self._lock(conn, lock_key)
        if prior_key == key:
            current = self._load(conn, key)
            self._save(conn, updated_context(current, message, key, mrn), inbox_id)
            return
        old = self._load(conn, prior_key)
        survivor = self._load(conn, key)
        if survivor is None and old is not None:
            survivor = replace(old, patient_key=key, identifier=mrn, revision=old.revision)
        self._save(conn, updated_context(survivor, message, key, mrn), inbox_id)
        if old is None:
            old = PatientContext(patient_key=prior_key, identifier=prior)
        old = replace(old, last_event="A40", revision=old.revision + 1)
        self._save(conn, old, inbox_id, merged_into=key)
        conn.execute(
            "UPDATE patient_context SET merged_into = %s WHERE merged_into = %s",
            (key, prior_key),
        )
        messages_moved = 0
        for table in ("hl7_outbox", "fhir_outbox"):
            # Not yet sent messages are rendered again with the survivor's identity; a message
            # already attempted keeps its bytes (the peer may have seen its control ID).
            cursor = conn.execute(
                f"UPDATE {table} SET patient_key = %s,"
                " rendered_revision = CASE WHEN state = 'pending' AND attempts = 0"
                " AND document IS NOT NULL THEN NULL ELSE rendered_revision END,"
                " payload = CASE WHEN state = 'pending' AND attempts = 0"
                " AND document IS NOT NULL THEN NULL ELSE payload END"
                " WHERE patient_key = %s",
                (key, prior_key),
            )
            messages_moved += cursor.rowcount
        studies = self._studies_of(conn, MatchKey(*prior_key.split("|", 1)))
        if studies:
            name = message.name
            conn.execute(
                "UPDATE worklist SET patient_id = %s, patient_name = %s,"
                " updated_at = clock_timestamp() WHERE study_instance_uid = ANY(%s)",
                (mrn.id_number, _dicom_name(name), studies),
            )
        conn.execute(
            "INSERT INTO patient_merges (prior_patient_key, patient_key, message_id,"
            " studies_moved, messages_moved) VALUES (%s, %s, %s, %s, %s)",
            (prior_key, key, inbox_id, len(studies), messages_moved),
        )
        # the keys are MRNs: never at INFO (console, shipped logs)
        log.info("merged a patient (A40): %d studies, %d messages", len(studies), messages_moved)
        log.debug("merged patient %s into %s", prior_key, key)

    def _studies_of(self, conn: Any, key: MatchKey) -> list[str]:
        """Studies whose DICOM patient matches ``key`` under the matching rules.

        The normalised identifier is a suffix of the stored Patient ID (rules only remove
        prefixes, zeros and case), so SQL narrows the candidates and the rules decide.
        """
        rows = conn.execute(
            "SELECT study_instance_uid, patient_id, issuer_of_patient_id FROM studies"
            " WHERE upper(patient_id) LIKE %s",
            ("%" + key.identifier.upper().replace("%", r"\%").replace("_", r"\_"),),
        ).fetchall()
        return [
            row["study_instance_uid"]
            for row in rows
            if self.rules.dicom_key(row["patient_id"], row["issuer_of_patient_id"]) == key
        ]

    # -- reading -------------------------------------------------------------------------------

    def resolve(self, patient_key: str) -> ResolvedContext | None:
        """The context for a key, following merges; None when ADT never mentioned the patient.

        A key without authority (no DICOM issuer, no default authority) matches the one
        patient with that identifier, if exactly one exists.
        """
        with self.database.connection() as conn:
            return self._resolve(conn, patient_key)

    def resolve_key(self, patient_key: str) -> str:
        """The surviving key for ``patient_key`` (itself when unknown or never merged)."""
        resolved = self.resolve(patient_key)
        return resolved.patient_key if resolved else patient_key

    def _resolve(self, conn: Any, patient_key: str) -> ResolvedContext | None:
        row = conn.execute(
            "SELECT patient_key, context, revision, merged_into FROM patient_context"
            " WHERE patient_key = %s",
            (patient_key,),
        ).fetchone()
        if row is None:
            authority, _, identifier = patient_key.partition("|")
            if authority or not identifier:
                return None
            rows = conn.execute(
                "SELECT patient_key, context, revision, merged_into FROM patient_context"
                " WHERE mrn_identifier = %s AND merged_into IS NULL LIMIT 2",
                (identifier,),
            ).fetchall()
            if len(rows) != 1:
                return None
            row = rows[0]
        for _ in range(_MAX_MERGE_HOPS):
            if row["merged_into"] is None:
                context = PatientContext.from_json(row["context"])
                return ResolvedContext(
                    row["patient_key"], replace(context, revision=row["revision"])
                )
            row = conn.execute(
                "SELECT patient_key, context, revision, merged_into FROM patient_context"
                " WHERE patient_key = %s",
                (row["merged_into"],),
            ).fetchone()
        raise StoreError(f"patient merges starting at {patient_key} form a loop")

    def context(self, patient_key: str) -> PatientContext | None:
        resolved = self.resolve(patient_key)
        return resolved.context if resolved else None

    def inbox(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT id, sending_application, message_control_id, message_type, version_id,"
                " charset, state, ack_code, error, patient_key, received_at FROM hl7_inbox"
                " ORDER BY id DESC LIMIT %s",
                (limit,),
            ).fetchall()

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _lock(conn: Any, patient_key: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 5))", (patient_key,))

    @staticmethod
    def _load(conn: Any, patient_key: str, *, lock: bool = False) -> PatientContext | None:
        """The stored context; with ``lock``, read after taking the patient's lock.

        Two statements on purpose: under READ COMMITTED a statement sees the data as of its
        start, so a read in the same statement as the lock wait could miss the update the
        other transaction committed meanwhile.
        """
        if lock:
            PatientStore._lock(conn, patient_key)
        row = conn.execute(
            "SELECT context, revision FROM patient_context WHERE patient_key = %s",
            (patient_key,),
        ).fetchone()
        if row is None:
            return None
        return replace(PatientContext.from_json(row["context"]), revision=row["revision"])

    def _save(
        self, conn: Any, context: PatientContext, inbox_id: int, merged_into: str | None = None
    ) -> None:
        key = self.rules.hl7_key(context.identifier)
        conn.execute(
            "INSERT INTO patient_context (patient_key, mrn_authority, mrn_identifier, context,"
            " revision, visit_status, ward, merged_into, last_message_id)"
            " VALUES (%(key)s, %(authority)s, %(identifier)s, %(context)s, %(revision)s,"
            " %(status)s, %(ward)s, %(merged_into)s, %(message)s)"
            " ON CONFLICT (patient_key) DO UPDATE SET context = EXCLUDED.context,"
            " revision = EXCLUDED.revision, visit_status = EXCLUDED.visit_status,"
            " ward = EXCLUDED.ward, merged_into = EXCLUDED.merged_into,"
            " last_message_id = EXCLUDED.last_message_id, updated_at = clock_timestamp()",
            {
                "key": context.patient_key,
                "authority": key.authority,
                "identifier": key.identifier,
                "context": Jsonb(context.to_json()),
                "revision": context.revision,
                "status": context.visit_status,
                "ward": context.location.point_of_care,
                "merged_into": merged_into,
                "message": inbox_id,
            },
        )


def _dicom_name(name: PersonName) -> str:
    return "^".join([name.family, name.given, name.middle, name.prefix, name.suffix]).rstrip("^")


_INSERT_INBOX = (
    "INSERT INTO hl7_inbox (sending_application, sending_facility, message_control_id,"
    " message_type, version_id, charset, peer, raw, state, ack_code, error, patient_key)"
    " VALUES (%(sending_application)s, %(sending_facility)s, %(message_control_id)s,"
    " %(message_type)s, %(version_id)s, %(charset)s, %(peer)s, %(raw)s, %(state)s,"
    " %(ack_code)s, %(error)s, %(patient_key)s) {on_conflict} RETURNING id"
)
# Results held for this patient's ADT (``context_wait_seconds``) go out now, enriched.
_WAKE_HELD_RESULTS = """
WITH hl7 AS (
    UPDATE hl7_outbox SET next_attempt_at = clock_timestamp()
    WHERE patient_key = %(key)s AND state = 'pending' AND attempts = 0 AND payload IS NULL
      AND next_attempt_at > clock_timestamp()
    RETURNING 1
), fhir AS (
    UPDATE fhir_outbox SET next_attempt_at = clock_timestamp()
    WHERE patient_key = %(key)s AND state = 'pending' AND attempts = 0 AND payload IS NULL
      AND next_attempt_at > clock_timestamp()
    RETURNING 1
)
SELECT pg_notify(%(channel)s, '') FROM (SELECT 1) AS one
WHERE EXISTS (SELECT 1 FROM hl7) OR EXISTS (SELECT 1 FROM fhir)
"""
_ON_CONFLICT_ONCE = (
    "ON CONFLICT (sending_application, sending_facility, message_control_id)"
    " WHERE state IN ('applied', 'ignored') DO NOTHING"
)
