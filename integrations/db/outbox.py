"""Outboxes to the EMR in PostgreSQL: HL7 ORU messages and FHIR bundles waiting for a peer (I/O).

A message is written here before anything is sent and leaves (state ``sent``) only when the
peer acknowledged it: HL7 ACK AA, FHIR 2xx. Its identity is fixed at creation (MSH-10, the
FHIR identifiers), so every resend carries the same one and the receiver can drop duplicates.
Rows hold either a ready payload or a *document* rendered into the payload at the first
attempt, with the patient's ADT context as it is then.

Delivery order (:meth:`claim`): only the oldest pending message of each patient may be sent,
so a patient's messages arrive in the order they were queued even when one is being retried;
among those heads, the patient queue holding the highest ``priority`` goes first (a Critical
result pushes its patient's earlier messages ahead of other patients'), then the oldest.
A claimed row is leased for a while so that a second sender skips it and a crashed sender's
row becomes available again when the lease ends.

Durability: queuing a message waits for the WAL flush (a queued message survives anything);
the records of an attempt (lease, outcome, rendered payload) do not. A pacsflow crash loses
none of them (PostgreSQL has them); a PostgreSQL crash may forget the last fraction of a second
of outcomes, and those messages are then sent once more under the same control ID and FHIR
identifiers, which receivers drop. Waiting for the flush would cost one disk sync per message
(measured: ORU delivery 93 -> 461 messages/s without it, bench/hl7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg.types.json import Jsonb

from integrations.db.connection import Database
from integrations.db.patients import OUTBOX_CHANNEL

_CLAIM = """
UPDATE {table} AS o SET
    leased_until = clock_timestamp() + make_interval(secs => %(lease)s),
    attempts = o.attempts + 1,
    last_attempt_at = clock_timestamp()
WHERE o.id = (
    SELECT id FROM (
        SELECT id, next_attempt_at, leased_until,
               row_number() OVER (PARTITION BY {partition} ORDER BY {order}) AS position,
               max(priority) OVER (PARTITION BY {partition}) AS queue_priority
        FROM {table} WHERE state = 'pending'{destination}
    ) AS pending
    WHERE position = 1
      AND next_attempt_at <= clock_timestamp()
      AND (leased_until IS NULL OR leased_until < clock_timestamp())
    ORDER BY queue_priority DESC, id
    LIMIT 1
)
  AND o.state = 'pending'
  AND (o.leased_until IS NULL OR o.leased_until < clock_timestamp())
RETURNING o.*, clock_timestamp() AS claimed_at
"""


@dataclass(frozen=True)
class OutboxItem:
    """A claimed row: everything a sender needs to render and deliver it."""

    id: int
    key: str  # message control ID / FHIR idempotency key
    study_instance_uid: str | None
    patient_key: str
    document: dict[str, Any] | None
    payload: Any
    rendered_revision: int | None
    clinical_context: str
    priority: int
    attempts: int  # including this one
    created_at: datetime
    claimed_at: datetime


class LeasedQueue:
    """A table of deliveries drained in order per queue, with leases, backoff and outcomes.

    Each row belongs to one queue (``partition``: the patient for the EMR outboxes, the
    destination and study for the results outbox); only a queue's first pending row
    (``order``) may be claimed, the queue holding the highest ``priority`` first. The table
    has the columns ``id, state, priority, attempts, next_attempt_at, leased_until,
    last_attempt_at, last_error, sent_at, failed_at, created_at``.
    """

    table = ""
    partition = "patient_key"
    order = "id"
    channel = OUTBOX_CHANNEL  # NOTIFY'd when something is queued, so a sender wakes at once

    def __init__(self, database: Database) -> None:
        self.database = database

    def _destination_condition(self) -> str:
        """SQL that limits a query to this store's rows (HL7: one destination's)."""
        return ""

    def _claim_row(self, lease_seconds: float) -> dict[str, Any] | None:
        """Lease the next row to send (see the class docstring for the order).

        The lease is committed without waiting for the WAL flush: losing it in a database
        crash only forgets an attempt count, never a message.
        """
        with self.database.connection() as conn, conn.transaction():
            conn.execute("SET LOCAL synchronous_commit TO OFF")
            row: dict[str, Any] | None = conn.execute(
                _CLAIM.format(  # type: ignore[arg-type]
                    table=self.table,
                    partition=self.partition,
                    order=self.order,
                    destination=self._destination_condition(),
                ),
                {"lease": lease_seconds},
            ).fetchone()
        return row

    def claim(self, lease_seconds: float) -> Any:
        raise NotImplementedError

    def _update(
        self, item_id: int, assignments: str, params: dict[str, Any], *, durable: bool = True
    ) -> None:
        with self.database.connection() as conn, conn.transaction():
            if not durable:
                conn.execute("SET LOCAL synchronous_commit TO OFF")
            conn.execute(
                f"UPDATE {self.table} SET {assignments} WHERE id = %(id)s",  # type: ignore[arg-type]
                {**params, "id": item_id},
            )

    def schedule_retry(self, item_id: int, delay_seconds: float, error: str, **status: Any) -> None:
        self._update(
            item_id,
            "leased_until = NULL, last_error = %(error)s,"
            " next_attempt_at = clock_timestamp() + make_interval(secs => %(delay)s)"
            + self._status_assignments(status),
            {"error": error, "delay": delay_seconds, **status},
            durable=False,
        )

    def mark_sent(self, item_id: int, **status: Any) -> None:
        self._update(
            item_id,
            "state = 'sent', sent_at = clock_timestamp(), leased_until = NULL, last_error = NULL"
            + self._status_assignments(status),
            status,
            durable=False,
        )

    def mark_failed(self, item_id: int, error: str, **status: Any) -> None:
        self._update(
            item_id,
            "state = 'failed', failed_at = clock_timestamp(), leased_until = NULL,"
            " last_error = %(error)s" + self._status_assignments(status),
            {"error": error, **status},
            durable=False,
        )

    @staticmethod
    def _status_assignments(status: dict[str, Any]) -> str:
        return "".join(f", {name} = %({name})s" for name in status)

    def release_all_leases(self) -> int:
        """Forget every lease (a sender starting after a crash takes its rows back at once)."""
        with self.database.connection() as conn:
            cursor = conn.execute(
                f"UPDATE {self.table} SET leased_until = NULL"  # type: ignore[arg-type]
                " WHERE state = 'pending' AND leased_until IS NOT NULL"
                f"{self._destination_condition()}"
            )
            return cursor.rowcount

    def seconds_until_due(self) -> float | None:
        """How long until the next pending message may be attempted (None: nothing pending)."""
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT extract(epoch FROM min(greatest(next_attempt_at,"  # type: ignore[arg-type]
                " coalesce(leased_until, next_attempt_at))) - clock_timestamp()) AS wait"
                f" FROM {self.table} WHERE state = 'pending'{self._destination_condition()}"
            ).fetchone()
        if row is None or row["wait"] is None:
            return None
        return max(0.0, float(row["wait"]))

    def rows(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        condition = "WHERE state = %(state)s" if state else ""
        with self.database.connection() as conn:
            return conn.execute(
                f"SELECT * FROM {self.table} {condition} ORDER BY id LIMIT %(limit)s",  # type: ignore[arg-type]
                {"state": state, "limit": limit},
            ).fetchall()

    def waiting(self) -> tuple[int, float]:
        """(pending rows, age in seconds of the oldest by the database clock; 0 when none)."""
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT count(*) AS n, coalesce(extract(epoch FROM clock_timestamp()"  # type: ignore[arg-type]
                f" - min(created_at)), 0) AS age FROM {self.table}"
                f" WHERE state = 'pending'{self._destination_condition()}"
            ).fetchone()
        return int(row["n"]), float(row["age"])

    def counts(self) -> dict[str, int]:
        with self.database.connection() as conn:
            rows = conn.execute(
                f"SELECT state, count(*) AS n FROM {self.table} GROUP BY state"  # type: ignore[arg-type]
            ).fetchall()
        return {row["state"]: row["n"] for row in rows}

    def messages(self, study_instance_uid: str) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                f"SELECT * FROM {self.table} WHERE study_instance_uid = %s ORDER BY id",  # type: ignore[arg-type]
                (study_instance_uid,),
            ).fetchall()


class _Outbox(LeasedQueue):
    """An EMR outbox: one ordered queue per patient."""

    key_column = ""

    def claim(self, lease_seconds: float) -> OutboxItem | None:
        """Lease the next message to send (see the module docstring for the order)."""
        row = self._claim_row(lease_seconds)
        if row is None:
            return None
        return OutboxItem(
            id=row["id"],
            key=row[self.key_column],
            study_instance_uid=row["study_instance_uid"],
            patient_key=row["patient_key"],
            document=row["document"],
            payload=row["payload"],
            rendered_revision=row["rendered_revision"],
            clinical_context=row["clinical_context"],
            priority=row["priority"],
            attempts=row["attempts"],
            created_at=row["created_at"],
            claimed_at=row["claimed_at"],
        )

    def payload_value(self, payload: Any) -> Any:
        """The payload as the driver stores it in this table's payload column."""
        return payload

    def defer(self, item_id: int, until: datetime) -> None:
        """Put a claimed message back without counting the attempt (waiting for ADT context)."""
        self._update(
            item_id,
            "attempts = attempts - 1, leased_until = NULL, next_attempt_at = %(until)s",
            {"until": until},
            durable=False,
        )

    def retry_failed(self, ids: list[int] | None = None) -> int:
        """Send failed messages again (all of them, or those ``ids``); returns how many."""
        condition = "state = 'failed'" + (" AND id = ANY(%(ids)s)" if ids else "")
        with self.database.connection() as conn:
            cursor = conn.execute(
                f"UPDATE {self.table} SET state = 'pending', failed_at = NULL,"  # type: ignore[arg-type]
                f" next_attempt_at = clock_timestamp() WHERE {condition}",
                {"ids": ids or []},
            )
            conn.execute(f"NOTIFY {self.channel}")
            return cursor.rowcount


Hl7Destination = Literal["emr", "ris"]
HL7_DESTINATIONS: tuple[Hl7Destination, ...] = ("emr", "ris")


class OutboxStore(_Outbox):
    """Outbound HL7 v2 messages (ORU^R01 results, and what other stages queue).

    Each row has a destination: ``emr`` (results and alerts, ``[emr]``) or ``ris`` (the
    ORM/OMI priority updates, ``[ris]``). A store made for one destination claims only its
    rows; :meth:`enqueue` writes to the store's destination.
    """

    table = "hl7_outbox"
    key_column = "message_control_id"

    def __init__(self, database: Database, destination: Hl7Destination = "emr") -> None:
        super().__init__(database)
        if destination not in HL7_DESTINATIONS:
            raise ValueError(f"unknown HL7 destination {destination!r}")
        self.destination = destination

    def _destination_condition(self) -> str:
        return f" AND destination = '{self.destination}'"  # one of HL7_DESTINATIONS

    def enqueue(
        self,
        *,
        message_control_id: str,
        message_type: str,
        payload: str,
        study_instance_uid: str | None,
        patient_key: str,
        priority: int = 0,
    ) -> bool:
        """Add a ready-made ER7 message; False when one with this control ID is already there.

        ``payload`` is sent as it is (MSH-10 must be ``message_control_id``). A higher
        ``priority`` is delivered first, but never before an earlier message to the same
        patient; ``patient_key`` should come from
        :func:`integrations.emr.enqueue.patient_key_for`. Result documents rendered at send
        time are queued by :func:`integrations.emr.enqueue.enqueue_result`.
        """
        with self.database.connection() as conn:
            row = conn.execute(
                "INSERT INTO hl7_outbox (message_control_id, study_instance_uid, patient_key,"
                " message_type, payload, priority, clinical_context, destination)"
                " VALUES (%s, %s, %s, %s, %s, %s, 'given', %s)"
                " ON CONFLICT (message_control_id) DO NOTHING RETURNING id",
                (
                    message_control_id,
                    study_instance_uid,
                    patient_key,
                    message_type,
                    payload,
                    priority,
                    self.destination,
                ),
            ).fetchone()
            if row is not None:
                conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        return row is not None


class FhirOutboxStore(_Outbox):
    """FHIR transaction bundles (DiagnosticReport with its Observations) for the FHIR server."""

    table = "fhir_outbox"
    key_column = "idempotency_key"

    def payload_value(self, payload: Any) -> Any:
        return Jsonb(payload)

    def enqueue(
        self,
        *,
        idempotency_key: str,
        study_instance_uid: str | None,
        patient_key: str,
        document: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        priority: int = 0,
    ) -> bool:
        """Add a bundle (or a document rendered at the first attempt); False if already there."""
        if payload is None and document is None:
            raise ValueError("enqueue needs a payload or a document")
        with self.database.connection() as conn:
            row = conn.execute(
                "INSERT INTO fhir_outbox (idempotency_key, study_instance_uid, patient_key,"
                " document, payload, priority, clinical_context)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                (
                    idempotency_key,
                    study_instance_uid,
                    patient_key,
                    Jsonb(document) if document is not None else None,
                    Jsonb(payload) if payload is not None else None,
                    priority,
                    "given" if payload is not None else "none",
                ),
            ).fetchone()
            if row is not None:
                conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")
        return row is not None
