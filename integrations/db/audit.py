"""The audit trail in PostgreSQL: append-only records and their syslog delivery queue (I/O).

``audit_records`` holds each audited event with its AuditMessage XML; a trigger refuses any
UPDATE or DELETE (migration 051). ``audit_outbox`` holds the delivery state of each record and
is drained like the EMR outboxes (:class:`integrations.db.outbox.LeasedQueue`: lease, retry
with backoff, sent), in one queue so that records reach the collector in the order recorded.
A record and its queue row are written in one transaction, waiting for the WAL flush.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from integrations.db.connection import Database
from integrations.db.outbox import LeasedQueue

AUDIT_CHANNEL = "pacsflow_audit_outbox"


@dataclass(frozen=True)
class AuditRecordRow:
    """A record without its message: what the IT view may see (no patient data)."""

    id: int
    recorded_at: datetime
    event_time: datetime
    event_id: str
    event_type: str
    action: str
    outcome: int
    user_id: str
    kind: str
    study_instance_uid: str | None


_SUMMARY_COLUMNS = (
    "id, recorded_at, event_time, event_id, event_type, action, outcome, user_id, kind,"
    " study_instance_uid"
)


@dataclass(frozen=True)
class AuditDelivery:
    """A claimed delivery: which record to send, and how many attempts it has had."""

    id: int
    audit_record_id: int
    attempts: int  # including this one

    @property
    def key(self) -> str:
        return str(self.audit_record_id)


class AuditOutbox(LeasedQueue):
    """Delivery queue of the audit records to the syslog collector: one queue, oldest first."""

    table = "audit_outbox"
    partition = "queue"
    channel = AUDIT_CHANNEL

    def claim(self, lease_seconds: float) -> AuditDelivery | None:
        row = self._claim_row(lease_seconds)
        if row is None:
            return None
        return AuditDelivery(row["id"], row["audit_record_id"], row["attempts"])


class AuditStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def append(
        self,
        *,
        event_time: datetime,
        event_id: str,
        event_type: str,
        action: str,
        outcome: int,
        user_id: str,
        kind: str,
        study_instance_uid: str | None,
        message: str,
        queue: bool,
    ) -> int:
        """Insert a record (and its delivery row when ``queue``); returns the record's id."""
        with self.database.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit TO ON")
            record_id = conn.execute(
                "INSERT INTO audit_records (event_time, event_id, event_type, action, outcome,"
                " user_id, kind, study_instance_uid, message)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
                (
                    event_time,
                    event_id,
                    event_type,
                    action,
                    outcome,
                    user_id,
                    kind,
                    study_instance_uid,
                    message,
                ),
            ).fetchone()["id"]
            if queue:
                conn.execute("INSERT INTO audit_outbox (audit_record_id) VALUES (%s)", (record_id,))
                conn.execute(f"NOTIFY {AUDIT_CHANNEL}")
        return int(record_id)

    def message(self, record_id: int) -> tuple[str, datetime, int] | None:
        """(message XML, event time, outcome) of a record."""
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT message, event_time, outcome FROM audit_records WHERE id = %s",
                (record_id,),
            ).fetchone()
        return None if row is None else (row["message"], row["event_time"], row["outcome"])

    def last_message(self, kind: str) -> str | None:
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT message FROM audit_records WHERE kind = %s ORDER BY id DESC LIMIT 1",
                (kind,),
            ).fetchone()
        return None if row is None else str(row["message"])

    def patient_of(self, study_instance_uid: str) -> tuple[str, str]:
        """(Patient ID, Issuer of Patient ID) of a study the node received ('' when unknown)."""
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT patient_id, issuer_of_patient_id FROM studies"
                " WHERE study_instance_uid = %s",
                (study_instance_uid,),
            ).fetchone()
        return ("", "") if row is None else (row["patient_id"], row["issuer_of_patient_id"])

    def search(
        self,
        *,
        user_id: str | None = None,
        kind: str | None = None,
        event_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[AuditRecordRow]:
        """Records, newest first, without their messages (nothing here names a patient)."""
        conditions: list[str] = []
        params: dict[str, object] = {}
        for column, value in (("user_id", user_id), ("kind", kind), ("event_id", event_id)):
            if value:
                conditions.append(f"{column} = %({column})s")
                params[column] = value
        if since is not None:
            conditions.append("recorded_at >= %(since)s")
            params["since"] = since
        if until is not None:
            conditions.append("recorded_at < %(until)s")
            params["until"] = until
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        with self.database.connection() as conn:
            rows = conn.execute(
                f"SELECT {_SUMMARY_COLUMNS} FROM audit_records {where}"  # type: ignore[arg-type]
                " ORDER BY id DESC LIMIT %(limit)s",
                {**params, "limit": limit},
            ).fetchall()
        return [AuditRecordRow(**row) for row in rows]

    def delivery_counts(self) -> dict[str, int]:
        return AuditOutbox(self.database).counts()
