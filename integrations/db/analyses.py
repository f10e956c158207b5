"""Analyses, result objects and priors of a study in PostgreSQL (I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from integrations.db.connection import Database
from integrations.errors import StoreError

SR_KIND = "sr"


@dataclass(frozen=True)
class BuiltObject:
    """One built result object as recorded: where it is and what it contains."""

    sop_instance_uid: str
    series_instance_uid: str
    sop_class_uid: str
    kind: str
    path: str
    content_sha256: str
    input_digest: str
    status: str = "final"  # or "preliminary"


class AnalysisStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    def record_analysis(
        self,
        *,
        study_instance_uid: str,
        analyzer: str,
        generation: int,
        model_name: str,
        model_version: str,
        status: str,
        tier: str,
        result_path: str,
        summary: dict[str, Any],
        inference_seconds: float,
    ) -> None:
        """One row per study and analyzer; a rerun replaces it."""
        with self.database.connection() as conn:
            conn.execute(
                "INSERT INTO analyses (study_instance_uid, analyzer, generation, model_name,"
                " model_version, status, tier, result_path, summary, inference_seconds)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (study_instance_uid, analyzer) DO UPDATE SET"
                " generation = EXCLUDED.generation, model_name = EXCLUDED.model_name,"
                " model_version = EXCLUDED.model_version, status = EXCLUDED.status,"
                " tier = EXCLUDED.tier, result_path = EXCLUDED.result_path,"
                " summary = EXCLUDED.summary, inference_seconds = EXCLUDED.inference_seconds,"
                " created_at = clock_timestamp()",
                (
                    study_instance_uid,
                    analyzer,
                    generation,
                    model_name,
                    model_version,
                    status,
                    tier,
                    result_path,
                    Jsonb(summary),
                    inference_seconds,
                ),
            )

    def record_interval_change(
        self, study_instance_uid: str, analyzer: str, comparison: dict[str, Any]
    ) -> None:
        """Keep the prior comparison with the analysis, for the worklist and the EMR message."""
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE analyses SET summary = summary || jsonb_build_object('interval_change', %s::jsonb)"
                " WHERE study_instance_uid = %s AND analyzer = %s",
                (Jsonb(comparison), study_instance_uid, analyzer),
            )

    def analyses(self, study_instance_uid: str) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM analyses WHERE study_instance_uid = %s ORDER BY analyzer",
                (study_instance_uid,),
            ).fetchall()

    def record_result_object(
        self,
        *,
        sop_instance_uid: str,
        study_instance_uid: str,
        series_instance_uid: str,
        sop_class_uid: str,
        kind: str,
        analyzer: str,
        model_version: str,
        generation: int,
        path: str,
        content_sha256: str = "",
        input_digest: str = "",
    ) -> None:
        """Record one built object on its own (superseding nothing); see :meth:`record_built`."""
        self.record_built(
            study_instance_uid=study_instance_uid,
            analyzer=analyzer,
            model_version=model_version,
            generation=generation,
            objects=[
                BuiltObject(
                    sop_instance_uid=sop_instance_uid,
                    series_instance_uid=series_instance_uid,
                    sop_class_uid=sop_class_uid,
                    kind=kind,
                    path=path,
                    content_sha256=content_sha256,
                    input_digest=input_digest,
                )
            ],
            replaces_kinds=[],
            superseded_by=None,
        )

    def live_report(self, study_instance_uid: str, analyzer: str) -> dict[str, Any] | None:
        """The study's live (not superseded) SR of ``analyzer``, if any."""
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM result_objects WHERE study_instance_uid = %s AND analyzer = %s"
                " AND kind = %s AND status <> 'superseded'",
                (study_instance_uid, analyzer, SR_KIND),
            ).fetchone()

    def replaced_report(self, sop_instance_uid: str) -> dict[str, Any] | None:
        """The SR that the SR ``sop_instance_uid`` replaced (its predecessor), if any."""
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM result_objects WHERE superseded_by = %s AND kind = %s"
                " ORDER BY built_at DESC LIMIT 1",
                (sop_instance_uid, SR_KIND),
            ).fetchone()

    def record_built(
        self,
        *,
        study_instance_uid: str,
        analyzer: str,
        model_version: str,
        generation: int,
        objects: Sequence[BuiltObject],
        replaces_kinds: Sequence[str],
        superseded_by: str | None,
    ) -> None:
        """Record one build of ``replaces_kinds`` for a study and analyzer, in one transaction.

        The live objects of those kinds that this build does not contain become superseded
        (by ``superseded_by``, the SR that replaces them). A UID built again must carry the
        same content: a different content hash under a known UID raises StoreError, as one
        UID naming two contents is exactly what must never reach a PACS. An unchanged object
        keeps its stored_at, so a rerun need not send it again.
        """
        uids = [item.sop_instance_uid for item in objects]
        with self.database.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE result_objects SET status = 'superseded', superseded_by = %s"
                " WHERE study_instance_uid = %s AND analyzer = %s AND kind = ANY(%s)"
                " AND status <> 'superseded' AND NOT (sop_instance_uid = ANY(%s))",
                (superseded_by, study_instance_uid, analyzer, list(replaces_kinds), uids),
            )
            for item in objects:
                known = conn.execute(
                    "SELECT content_sha256 FROM result_objects WHERE sop_instance_uid = %s"
                    " FOR UPDATE",
                    (item.sop_instance_uid,),
                ).fetchone()
                if known and known["content_sha256"] not in ("", item.content_sha256):
                    raise StoreError(
                        f"result object {item.sop_instance_uid} ({item.kind}) was rebuilt with"
                        " a different content under the same SOP Instance UID; not recorded"
                    )
                conn.execute(
                    "INSERT INTO result_objects (sop_instance_uid, study_instance_uid,"
                    " series_instance_uid, sop_class_uid, kind, analyzer, model_version,"
                    " generation, path, content_sha256, input_digest, status)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " ON CONFLICT (sop_instance_uid) DO UPDATE SET path = EXCLUDED.path,"
                    " built_at = clock_timestamp(), content_sha256 = EXCLUDED.content_sha256,"
                    " input_digest = EXCLUDED.input_digest, status = EXCLUDED.status,"
                    " superseded_by = NULL, stored_at = CASE WHEN"
                    " result_objects.content_sha256 = EXCLUDED.content_sha256"
                    " THEN result_objects.stored_at END",
                    (
                        item.sop_instance_uid,
                        study_instance_uid,
                        item.series_instance_uid,
                        item.sop_class_uid,
                        item.kind,
                        analyzer,
                        model_version,
                        generation,
                        item.path,
                        item.content_sha256,
                        item.input_digest,
                        item.status,
                    ),
                )

    def mark_stored(self, sop_instance_uids: list[str]) -> None:
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE result_objects SET stored_at = clock_timestamp() WHERE sop_instance_uid = ANY(%s)",
                (sop_instance_uids,),
            )

    def result_objects(self, study_instance_uid: str) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM result_objects WHERE study_instance_uid = %s ORDER BY kind, sop_instance_uid",
                (study_instance_uid,),
            ).fetchall()

    def record_prior(
        self,
        *,
        study_instance_uid: str,
        prior_study_instance_uid: str,
        prior_study_date: str,
        prior_accession_number: str,
        modality: str,
        status: str,
        detail: str = "",
    ) -> None:
        with self.database.connection() as conn:
            conn.execute(
                "INSERT INTO priors (study_instance_uid, prior_study_instance_uid, prior_study_date,"
                " prior_accession_number, modality, status, detail) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (study_instance_uid, prior_study_instance_uid) DO UPDATE SET"
                " status = EXCLUDED.status, detail = EXCLUDED.detail, recorded_at = clock_timestamp()",
                (
                    study_instance_uid,
                    prior_study_instance_uid,
                    prior_study_date,
                    prior_accession_number,
                    modality,
                    status,
                    detail,
                ),
            )
