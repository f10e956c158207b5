"""What the console reads from PostgreSQL, one query per view (I/O).

These return rows as the database holds them; :mod:`integrations.console.views` cuts them down
to what a role may see. The analytics and system queries select no patient column at all, so
nothing a Department Head or IT Administrator is shown can name a patient, whatever the view
code does.
"""

from __future__ import annotations

import re
from typing import Any

from integrations.db.analyses import AnalysisStore
from integrations.db.connection import Database
from integrations.db.escalations import EscalationStore
from integrations.db.store import StudyStore
from integrations.db.worklist import WorklistStore

OUTBOX_TABLES = ("hl7_outbox", "fhir_outbox", "results_outbox", "audit_outbox")
# The opaque study key (migration 041): what links and the operator's views carry.
STUDY_KEY = re.compile(r"^S[0-9A-HJKMNP-TV-Z]{12}$", re.IGNORECASE)


class ConsoleQueries:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.worklist = WorklistStore(database)
        self.studies = StudyStore(database)
        self.analyses = AnalysisStore(database)
        self.escalations = EscalationStore(database)
        self._has_study_key: bool | None = None

    def has_study_key(self) -> bool:
        if self._has_study_key is None:
            with self.database.connection() as conn:
                self._has_study_key = (
                    conn.execute(
                        "SELECT 1 FROM information_schema.columns WHERE table_name = 'studies'"
                        " AND column_name = 'study_key' AND table_schema = current_schema()"
                    ).fetchone()
                    is not None
                )
        return self._has_study_key

    def study_keys(self, study_uids: list[str]) -> dict[str, str]:
        """Study Instance UID -> the study's opaque key (the UID itself before migration 041)."""
        if not study_uids or not self.has_study_key():
            return {uid: uid for uid in study_uids}
        with self.database.connection() as conn:
            found = conn.execute(
                "SELECT study_instance_uid, study_key FROM studies"
                " WHERE study_instance_uid = ANY(%s)",
                (study_uids,),
            ).fetchall()
        keys = {row["study_instance_uid"]: row["study_key"] for row in found}
        return {uid: keys.get(uid, uid) for uid in study_uids}

    def resolve(self, key: str) -> str:
        """The Study Instance UID a route's key names (an opaque study key, or a UID)."""
        if self.has_study_key() and STUDY_KEY.match(key):
            with self.database.connection() as conn:
                row = conn.execute(
                    "SELECT study_instance_uid FROM studies WHERE study_key = %s",
                    (key.upper(),),
                ).fetchone()
            if row:
                return str(row["study_instance_uid"])
        return key

    def worklist_rows(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = self.worklist.rows(limit)
        uids = [row["study_instance_uid"] for row in rows]
        tokens = self._open_ack_tokens(uids)
        keys = self.study_keys(uids)
        for row in rows:
            row["ack_tokens"] = tokens.get(row["study_instance_uid"], [])
            row["study_key"] = keys[row["study_instance_uid"]]
        return rows

    def _open_ack_tokens(self, study_uids: list[str]) -> dict[str, list[str]]:
        if not study_uids:
            return {}
        with self.database.connection() as conn:
            found = conn.execute(
                "SELECT study_instance_uid, ack_token FROM escalations"
                " WHERE study_instance_uid = ANY(%s) AND ack_token IS NOT NULL"
                " AND acknowledged_at IS NULL AND tier = 'Critical' ORDER BY created_at",
                (study_uids,),
            ).fetchall()
        tokens: dict[str, list[str]] = {}
        for row in found:
            tokens.setdefault(row["study_instance_uid"], []).append(row["ack_token"])
        return tokens

    def study(self, study_instance_uid: str) -> dict[str, Any] | None:
        record = self.studies.study(study_instance_uid)
        if record is None:
            return None
        with self.database.connection() as conn:
            priors = conn.execute(
                "SELECT * FROM priors WHERE study_instance_uid = %s ORDER BY prior_study_date DESC",
                (study_instance_uid,),
            ).fetchall()
            run = conn.execute(
                "SELECT flow_run_id, state, error FROM dispatch WHERE study_instance_uid = %s"
                " ORDER BY id DESC LIMIT 1",
                (study_instance_uid,),
            ).fetchone()
        escalations = self.escalations.for_study(study_instance_uid)
        return {
            "key": self.study_keys([study_instance_uid])[study_instance_uid],
            "study": record,
            "worklist": self.worklist.get(study_instance_uid),
            "analyses": self.analyses.analyses(study_instance_uid),
            "priors": priors,
            "escalations": escalations,
            "escalation_events": {
                record.idempotency_key: self.escalations.events(record.idempotency_key)
                for record in escalations
            },
            "run": run,
        }

    def instance_path(self, study_instance_uid: str, sop_instance_uid: str) -> str | None:
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT path FROM instances WHERE study_instance_uid = %s"
                " AND sop_instance_uid = %s",
                (study_instance_uid, sop_instance_uid),
            ).fetchone()
        return row["path"] if row else None

    # -- de-identified aggregates (no patient column is selected) ---------------------------

    def analytics(self, days: int = 30) -> dict[str, Any]:
        with self.database.connection() as conn:
            daily = conn.execute(
                "SELECT date_trunc('day', s.closed_at)::date AS day, count(*) AS studies,"
                " count(*) FILTER (WHERE w.tier = 'Critical') AS critical,"
                " count(*) FILTER (WHERE w.tier = 'Urgent') AS urgent,"
                " count(*) FILTER (WHERE w.tier = 'Routine') AS routine,"
                " count(*) FILTER (WHERE EXISTS (SELECT 1 FROM escalations e"
                "   WHERE e.study_instance_uid = s.study_instance_uid)) AS escalated,"
                " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM"
                "   w.results_stored_at - s.closed_at)) AS turnaround_median_seconds"
                " FROM studies s LEFT JOIN worklist w USING (study_instance_uid)"
                " WHERE s.closed_at >= now() - make_interval(days => %s)"
                " GROUP BY 1 ORDER BY 1",
                (days,),
            ).fetchall()
            labels = conn.execute(
                "SELECT a.analyzer, p.item->>'label' AS label, count(*) AS positive,"
                " (SELECT count(*) FROM analyses b WHERE b.analyzer = a.analyzer"
                "   AND b.status = 'analysed') AS analysed"
                " FROM analyses a CROSS JOIN LATERAL jsonb_array_elements("
                "   COALESCE(a.summary->'positive', '[]'::jsonb)) AS p(item)"
                " WHERE a.status = 'analysed' GROUP BY 1, 2 ORDER BY 1, 3 DESC, 2",
            ).fetchall()
        return {"days": days, "daily": daily, "labels": labels}

    def system(self) -> dict[str, Any]:
        with self.database.connection() as conn:
            dispatch = conn.execute(
                "SELECT state, count(*) AS count FROM dispatch GROUP BY 1 ORDER BY 1"
            ).fetchall()
            outboxes: dict[str, list[dict[str, Any]]] = {}
            for table in OUTBOX_TABLES:
                exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL AS e", (table,))
                if exists.fetchone()["e"]:
                    outboxes[table] = conn.execute(
                        f"SELECT state, count(*) AS count, min(created_at) AS oldest"  # type: ignore[arg-type]
                        f" FROM {table} GROUP BY 1 ORDER BY 1"
                    ).fetchall()
            failed_runs = conn.execute(
                "SELECT id, flow_run_id, worker, finished_at, error FROM dispatch"
                " WHERE state = 'failed' ORDER BY finished_at DESC NULLS LAST LIMIT 50"
            ).fetchall()
            events = conn.execute(
                "SELECT at, kind, calling_ae_title, peer_host FROM node_events"
                " ORDER BY id DESC LIMIT 100"
            ).fetchall()
            escalations = conn.execute(
                "SELECT state, count(*) AS count FROM escalations GROUP BY 1 ORDER BY 1"
            ).fetchall()
            database = conn.execute(
                "SELECT now() AS now, pg_database_size(current_database()) AS size_bytes"
            ).fetchone()
        return {
            "database": database,
            "dispatch": dispatch,
            "outboxes": outboxes,
            "failed_runs": failed_runs,
            "node_events": events,
            "escalations": escalations,
        }
