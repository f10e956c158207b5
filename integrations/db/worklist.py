"""The AI worklist: one row per study, Critical first, then by study close time (I/O)."""

from __future__ import annotations

from typing import Any

from integrations.db.connection import Database

WORKLIST_ORDER = "tier_rank NULLS LAST, closed_at NULLS LAST, study_instance_uid"


class WorklistStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def mark_analysing(self, study_instance_uid: str) -> None:
        """Create or update the row when processing starts; the tier is not known yet."""
        with self.database.connection() as conn:
            conn.execute(
                "INSERT INTO worklist (study_instance_uid, accession_number, patient_id,"
                " patient_name, modality, status, received_at, closed_at, analysing_at)"
                " SELECT study_instance_uid, accession_number, patient_id, patient_name,"
                " array_to_string(modalities, '/'), 'analysing', first_received_at, closed_at,"
                " clock_timestamp() FROM studies WHERE study_instance_uid = %s"
                " ON CONFLICT (study_instance_uid) DO UPDATE SET status = 'analysing',"
                " closed_at = EXCLUDED.closed_at, analysing_at = EXCLUDED.analysing_at,"
                " updated_at = clock_timestamp()",
                (study_instance_uid,),
            )

    def record_outcome(
        self,
        study_instance_uid: str,
        *,
        tier: str,
        tier_rank: int,
        primary_finding: str,
        results_stored: bool,
    ) -> None:
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE worklist SET tier = %s, tier_rank = %s, primary_finding = %s,"
                " status = CASE WHEN %s THEN 'results stored' ELSE status END,"
                " results_stored_at = CASE WHEN %s THEN clock_timestamp() ELSE results_stored_at END,"
                " updated_at = clock_timestamp() WHERE study_instance_uid = %s",
                (
                    tier,
                    tier_rank,
                    primary_finding,
                    results_stored,
                    results_stored,
                    study_instance_uid,
                ),
            )

    def rows(self, limit: int = 200) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                f"SELECT * FROM worklist ORDER BY {WORKLIST_ORDER} LIMIT %s",  # type: ignore[arg-type]
                (limit,),
            ).fetchall()
