"""Escalation records for Critical findings, one per idempotency key (I/O)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from integrations.db.connection import Database


class EscalationStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def open(
        self,
        *,
        idempotency_key: str,
        study_instance_uid: str,
        finding: str,
        tier: str,
        probability: float,
        study_closed_at: datetime | None,
    ) -> bool:
        """Record an escalation; False when this key was escalated before (rerun, retry)."""
        with self.database.connection() as conn:
            row = conn.execute(
                "INSERT INTO escalations (idempotency_key, study_instance_uid, finding, tier,"
                " probability, study_closed_at) VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
                (idempotency_key, study_instance_uid, finding, tier, probability, study_closed_at),
            ).fetchone()
        return row is not None

    def for_study(self, study_instance_uid: str) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM escalations WHERE study_instance_uid = %s ORDER BY created_at",
                (study_instance_uid,),
            ).fetchall()
