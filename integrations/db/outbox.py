"""Outbound HL7 messages waiting for their peer's acknowledgement (I/O).

A message is written here before anything is sent; it leaves the outbox (state ``sent``) only
when the peer acknowledged it. Its MSH-10 control ID is fixed at creation, so every resend of
the same message carries the same ID and the receiver can drop duplicates.
"""

from __future__ import annotations

from typing import Any

from integrations.db.connection import Database


class OutboxStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def enqueue(
        self,
        *,
        message_control_id: str,
        message_type: str,
        payload: str,
        study_instance_uid: str | None,
        patient_key: str,
    ) -> bool:
        """Add a message; False when one with this control ID is already queued or sent."""
        with self.database.connection() as conn:
            row = conn.execute(
                "INSERT INTO hl7_outbox (message_control_id, study_instance_uid, patient_key,"
                " message_type, payload) VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (message_control_id) DO NOTHING RETURNING id",
                (message_control_id, study_instance_uid, patient_key, message_type, payload),
            ).fetchone()
        return row is not None

    def messages(self, study_instance_uid: str) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM hl7_outbox WHERE study_instance_uid = %s ORDER BY id",
                (study_instance_uid,),
            ).fetchall()
