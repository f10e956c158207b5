"""The AI worklist: one row per study, Critical first, then by study close time (I/O).

The tier is written as soon as inference yields it (the escalate step, before result objects
are built) and confirmed when the run ends, so a Critical study rises to the top of the list
within seconds of study close, whatever arrived before it.

A study the node is still receiving, or has closed and queued but not started, has no row
yet: the list shows it as ``received`` from the studies table, so the node's hot path writes
nothing extra per instance.
"""

from __future__ import annotations

from typing import Any

from integrations.db.connection import Database

WORKLIST_ORDER = "w.tier_rank NULLS LAST, w.closed_at NULLS LAST, w.study_instance_uid"

_ROWS = f"""
WITH listed AS (
    SELECT * FROM worklist
    UNION ALL
    SELECT (jsonb_populate_record(NULL::worklist, jsonb_build_object(
        'study_instance_uid', s.study_instance_uid,
        'accession_number', s.accession_number,
        'patient_id', s.patient_id,
        'patient_name', s.patient_name,
        'modality', array_to_string(s.modalities, '/'),
        'study_description', s.study_description,
        'generation', s.generation,
        'status', 'received',
        'received_at', s.first_received_at,
        'closed_at', s.closed_at,
        'updated_at', s.updated_at))).*
    FROM studies s
    WHERE s.state IN ('receiving', 'queued')
      AND NOT EXISTS (SELECT 1 FROM worklist x WHERE x.study_instance_uid = s.study_instance_uid)
)
SELECT w.*, e.escalations, e.escalation_state, e.acknowledged_by, e.acknowledged_at,
       e.first_notification_seconds
FROM listed w
LEFT JOIN LATERAL (
    SELECT count(*) AS escalations,
           CASE WHEN count(*) = 0 THEN NULL
                WHEN bool_or(state = 'open') THEN 'undelivered'
                WHEN bool_or(state = 'exhausted') THEN 'exhausted'
                WHEN bool_or(state = 'unroutable') THEN 'unroutable'
                WHEN bool_or(state = 'notified') THEN 'unacknowledged'
                ELSE 'acknowledged' END AS escalation_state,
           string_agg(DISTINCT acknowledged_by, ', ') AS acknowledged_by,
           max(acknowledged_at) AS acknowledged_at,
           min(first_notification_seconds) AS first_notification_seconds
    FROM escalations x WHERE x.study_instance_uid = w.study_instance_uid
) e ON true
WHERE (%(include_read)s OR w.status <> 'read')
  AND (%(tier)s::text IS NULL OR w.tier = %(tier)s::text)
ORDER BY {WORKLIST_ORDER}
LIMIT %(limit)s
"""


class WorklistStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def mark_analysing(self, study_instance_uid: str) -> None:
        """Create or update the row when processing starts; the tier is not known yet."""
        with self.database.connection() as conn:
            conn.execute(
                "INSERT INTO worklist (study_instance_uid, accession_number, patient_id,"
                " patient_name, modality, study_description, generation, status, received_at,"
                " closed_at, analysing_at)"
                " SELECT study_instance_uid, accession_number, patient_id, patient_name,"
                " array_to_string(modalities, '/'), study_description, generation, 'analysing',"
                " first_received_at, closed_at, clock_timestamp()"
                " FROM studies WHERE study_instance_uid = %s"
                " ON CONFLICT (study_instance_uid) DO UPDATE SET status = 'analysing',"
                " closed_at = EXCLUDED.closed_at, analysing_at = EXCLUDED.analysing_at,"
                " generation = EXCLUDED.generation, modality = EXCLUDED.modality,"
                " updated_at = clock_timestamp()",
                (study_instance_uid,),
            )

    def mark_ai_unavailable(self, study_instance_uid: str) -> None:
        """No model could run for the study (out of memory everywhere): "AI unavailable",
        with no tier, so nobody reads it as analysed and unremarkable."""
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE worklist SET status = 'AI unavailable', updated_at = clock_timestamp()"
                " WHERE study_instance_uid = %s AND status <> 'read'",
                (study_instance_uid,),
            )

    def record_tier(
        self,
        study_instance_uid: str,
        *,
        generation: int,
        tier: str,
        tier_rank: int,
        primary_finding: str,
        primary_probability: float | None,
        tier_rule: str,
        patient_location: str = "",
        only_if_more_urgent: bool = False,
        clinical_use: bool = True,
    ) -> bool:
        """Set the study's tier; with ``only_if_more_urgent`` a tier already known for this
        generation is only raised, never lowered (several analyzers report one by one).
        Returns whether the row changed."""
        with self.database.connection() as conn:
            row = conn.execute(
                "UPDATE worklist SET tier = %(tier)s, tier_rank = %(rank)s,"
                " primary_finding = %(finding)s, primary_probability = %(probability)s,"
                " tier_rule = %(rule)s, generation = %(generation)s,"
                " clinical_use = %(clinical_use)s AND (clinical_use"
                "                OR generation IS DISTINCT FROM %(generation)s),"
                " patient_location = CASE WHEN %(location)s = '' THEN patient_location"
                "                         ELSE %(location)s END,"
                " analysed_at = COALESCE(analysed_at, clock_timestamp()),"
                " tier_at = clock_timestamp(), updated_at = clock_timestamp()"
                " WHERE study_instance_uid = %(study)s"
                "   AND (NOT %(only_up)s OR tier_rank IS NULL OR generation IS DISTINCT FROM %(generation)s"
                "        OR tier_rank > %(rank)s)"
                " RETURNING study_instance_uid",
                {
                    "tier": tier,
                    "rank": tier_rank,
                    "finding": primary_finding,
                    "probability": primary_probability,
                    "rule": tier_rule,
                    "generation": generation,
                    "location": patient_location,
                    "study": study_instance_uid,
                    "only_up": only_if_more_urgent,
                    "clinical_use": clinical_use,
                },
            ).fetchone()
        return row is not None

    def record_outcome(
        self,
        study_instance_uid: str,
        *,
        tier: str,
        tier_rank: int,
        primary_finding: str,
        results_stored: bool,
        primary_probability: float | None = None,
        tier_rule: str = "",
        clinical_use: bool = True,
    ) -> None:
        """The run's final tier (from every analysis) and whether results reached the PACS;
        ``clinical_use`` False when any analysis came from a non-clinical model."""
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE worklist SET tier = %s, tier_rank = %s, primary_finding = %s,"
                " primary_probability = %s, tier_rule = %s, clinical_use = %s,"
                " analysed_at = COALESCE(analysed_at, clock_timestamp()),"
                " tier_at = CASE WHEN tier IS DISTINCT FROM %s THEN clock_timestamp() ELSE tier_at END,"
                " status = CASE WHEN %s AND status <> 'read' THEN 'results stored' ELSE status END,"
                " results_stored_at = CASE WHEN %s THEN clock_timestamp() ELSE results_stored_at END,"
                " updated_at = clock_timestamp() WHERE study_instance_uid = %s",
                (
                    tier,
                    tier_rank,
                    primary_finding,
                    primary_probability,
                    tier_rule,
                    clinical_use,
                    tier,
                    results_stored,
                    results_stored,
                    study_instance_uid,
                ),
            )

    def mark_results_stored(self, study_instance_uid: str) -> None:
        """The study's report reached the PACS (the results sender says so, not the run)."""
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE worklist SET status = CASE WHEN status <> 'read' THEN 'results stored'"
                " ELSE status END, results_stored_at = clock_timestamp(),"
                " updated_at = clock_timestamp() WHERE study_instance_uid = %s",
                (study_instance_uid,),
            )

    def record_priority_sent(
        self, study_instance_uid: str, message_control_id: str, tier: str
    ) -> None:
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE worklist SET priority_message_control_id = %s, priority_sent_tier = %s,"
                " updated_at = clock_timestamp() WHERE study_instance_uid = %s",
                (message_control_id, tier, study_instance_uid),
            )

    def mark_read(self, study_instance_uid: str) -> bool:
        """The radiologist read the study (RIS report, console); it leaves the open list."""
        with self.database.connection() as conn:
            row = conn.execute(
                "UPDATE worklist SET status = 'read', read_at = clock_timestamp(),"
                " updated_at = clock_timestamp() WHERE study_instance_uid = %s"
                " RETURNING study_instance_uid",
                (study_instance_uid,),
            ).fetchone()
        return row is not None

    def get(self, study_instance_uid: str) -> dict[str, Any] | None:
        with self.database.connection() as conn:
            row: dict[str, Any] | None = conn.execute(
                "SELECT * FROM worklist WHERE study_instance_uid = %s", (study_instance_uid,)
            ).fetchone()
        return row

    def rows(
        self, limit: int = 200, *, include_read: bool = True, tier: str | None = None
    ) -> list[dict[str, Any]]:
        """Critical first, then Urgent, Routine, not yet analysed; each by study close time.
        Studies received but not yet being analysed come last, as ``received``."""
        with self.database.connection() as conn:
            return conn.execute(
                _ROWS,  # type: ignore[arg-type]
                {"include_read": include_read, "tier": tier, "limit": limit},
            ).fetchall()
