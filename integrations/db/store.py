"""Studies, instances, the dispatch queue and step outcomes in PostgreSQL (I/O).

Every write that the node acknowledges to a peer is committed before the acknowledgement.
Times come from the database clock (``clock_timestamp()``) so that the node, the closer and
the workers agree on "quiet for N seconds" whatever host they run on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from integrations import metrics
from integrations.db.connection import Database
from integrations.db.records import DispatchItem, InstanceRecord, StudyRecord
from integrations.dicom.assembly import StudyActivity
from integrations.dicom.header import InstanceHeader
from integrations.dicom.priority import StudyPriority
from integrations.dicom.routing import Route, SeriesInfo

# One round trip per received instance. The instance row goes in first; only when it is new
# do the study and series rows get created or touched (a SOP Instance UID seen before changes
# nothing: the statement hands back the recorded content hash so the node can tell an
# identical re-send from a changed one). A new instance on a closed study re-opens it as a
# new generation, unless it is a prior moved here (as_prior) or one of pacsflow's own objects
# coming back (its SOP Instance UID or Series Instance UID is registered in result_objects):
# those are kept and never open, re-open or queue their study. Foreign keys are checked at
# the end of the statement, after all three inserts.
_RECORD_INSTANCE = """
WITH known AS (
    SELECT study_instance_uid, series_instance_uid, path, content_sha256
    FROM instances WHERE sop_instance_uid = %(sop_instance_uid)s
), flags AS (
    SELECT EXISTS (SELECT 1 FROM result_objects WHERE sop_instance_uid = %(sop_instance_uid)s)
           OR EXISTS (SELECT 1 FROM result_objects
                      WHERE series_instance_uid = %(series_instance_uid)s) AS ours
), inserted AS (
    INSERT INTO instances (
        sop_instance_uid, series_instance_uid, study_instance_uid, sop_class_uid,
        transfer_syntax_uid, instance_number, path, size_bytes, calling_ae_title,
        content_sha256, ours
    )
    SELECT %(sop_instance_uid)s, %(series_instance_uid)s, %(study_instance_uid)s,
           %(sop_class_uid)s, %(transfer_syntax_uid)s, %(instance_number)s, %(path)s,
           %(size_bytes)s, %(calling_ae_title)s, %(content_sha256)s, flags.ours
    FROM flags
    ON CONFLICT (sop_instance_uid) DO NOTHING
    RETURNING sop_instance_uid, ours
), quiet AS (
    -- kept without opening, re-opening or delaying the study
    SELECT %(as_prior)s OR ours AS quiet FROM flags
), study AS (
    INSERT INTO studies AS s (
        study_instance_uid, patient_id, issuer_of_patient_id, patient_name, patient_birth_date,
        patient_sex, accession_number, study_date, study_time, study_description,
        referring_physician_name, modalities, calling_ae_title, instance_count, state
    )
    SELECT %(study_instance_uid)s, %(patient_id)s, %(issuer_of_patient_id)s, %(patient_name)s,
           %(patient_birth_date)s, %(patient_sex)s, %(accession_number)s, %(study_date)s,
           %(study_time)s, %(study_description)s, %(referring_physician_name)s,
           CASE WHEN %(modality)s = '' THEN '{}'::text[] ELSE ARRAY[%(modality)s]::text[] END,
           %(calling_ae_title)s, 1, CASE WHEN quiet.quiet THEN 'prior' ELSE 'receiving' END
    FROM inserted, quiet
    ON CONFLICT (study_instance_uid) DO UPDATE SET
        generation = s.generation
            + CASE WHEN (SELECT quiet FROM quiet) OR s.state IN ('receiving', 'prior')
                   THEN 0 ELSE 1 END,
        first_received_at = CASE WHEN (SELECT quiet FROM quiet) OR s.state IN ('receiving', 'prior')
                                 THEN s.first_received_at ELSE clock_timestamp() END,
        closed_at = CASE WHEN (SELECT quiet FROM quiet) OR s.state IN ('receiving', 'prior')
                         THEN s.closed_at ELSE NULL END,
        state = CASE WHEN (SELECT quiet FROM quiet) OR s.state = 'prior' THEN s.state
                     ELSE 'receiving' END,
        last_received_at = CASE WHEN (SELECT quiet FROM quiet) THEN s.last_received_at
                                ELSE clock_timestamp() END,
        instance_count = s.instance_count + 1,
        modalities = CASE WHEN %(modality)s = '' OR %(modality)s = ANY(s.modalities) THEN s.modalities
                          ELSE array_append(s.modalities, %(modality)s) END,
        patient_id = CASE WHEN s.patient_id = '' THEN EXCLUDED.patient_id ELSE s.patient_id END,
        patient_name = CASE WHEN s.patient_name = '' THEN EXCLUDED.patient_name ELSE s.patient_name END,
        accession_number = CASE WHEN s.accession_number = '' THEN EXCLUDED.accession_number
                                ELSE s.accession_number END,
        updated_at = clock_timestamp()
    RETURNING generation
), series AS (
    INSERT INTO series AS r (
        series_instance_uid, study_instance_uid, modality, body_part_examined,
        series_description, protocol_name, series_number, laterality, view_position,
        sop_class_uids, instance_count, ours, station_name, anatomic_regions
    )
    SELECT %(series_instance_uid)s, %(study_instance_uid)s, %(modality)s, %(body_part_examined)s,
           %(series_description)s, %(protocol_name)s, %(series_number)s, %(laterality)s,
           %(view_position)s, ARRAY[%(sop_class_uid)s]::text[], 1, inserted.ours,
           %(station_name)s, %(anatomic_regions)s
    FROM inserted
    ON CONFLICT (series_instance_uid) DO UPDATE SET
        instance_count = r.instance_count + 1,
        sop_class_uids = CASE WHEN %(sop_class_uid)s = ANY(r.sop_class_uids) THEN r.sop_class_uids
                              ELSE array_append(r.sop_class_uids, %(sop_class_uid)s) END
    RETURNING series_instance_uid
)
SELECT (SELECT count(*) FROM inserted) AS new,
       (SELECT ours FROM flags) AS ours,
       known.study_instance_uid AS known_study_instance_uid,
       known.series_instance_uid AS known_series_instance_uid,
       known.path AS known_path,
       known.content_sha256 AS known_content_sha256,
       (SELECT count(*) FROM study) AS studies,
       (SELECT count(*) FROM series) AS series
FROM (SELECT 1) AS one LEFT JOIN known ON true
"""

# The highest priority first (decided at close: order priority, then study type), then the
# study closed first; a study with a live run (lease not expired) waits for it.
_CLAIM = """
UPDATE dispatch SET state = 'running', started_at = clock_timestamp(), worker = %(worker)s,
       heartbeat_at = clock_timestamp(),
       lease_expires_at = clock_timestamp() + make_interval(secs => %(lease)s)
WHERE id = (
    SELECT d.id FROM dispatch d
    WHERE d.state = 'queued'
      AND (d.retry_after IS NULL OR d.retry_after <= clock_timestamp())
      AND (%(max_images)s::integer IS NULL OR d.image_count <= %(max_images)s::integer)
      AND NOT EXISTS (
          SELECT 1 FROM dispatch r
          WHERE r.study_instance_uid = d.study_instance_uid AND r.state = 'running'
            AND r.lease_expires_at > clock_timestamp())
    ORDER BY d.priority DESC, d.closed_at NULLS LAST, d.queued_at, d.id
    FOR UPDATE SKIP LOCKED
    LIMIT 1
)
RETURNING id, study_instance_uid, generation, reason, queued_at, closed_at, priority,
          priority_reason
"""

# The work-pool route's pick: like _CLAIM, never a second run of a study whose run is active.
_NEXT_FOR_WORK_POOL = """
SELECT d.id, d.study_instance_uid, d.generation, d.reason, d.queued_at, d.closed_at
FROM dispatch d
WHERE d.state = 'queued'
  AND NOT EXISTS (
      SELECT 1 FROM dispatch r
      WHERE r.study_instance_uid = d.study_instance_uid AND r.state = 'running'
        AND r.lease_expires_at > clock_timestamp())
ORDER BY d.priority DESC, d.queued_at
FOR UPDATE SKIP LOCKED
LIMIT 1
"""

DISPATCH_CHANNEL = "pacsflow_dispatch"


@dataclass(frozen=True)
class KnownInstance:
    """The instance already recorded under a SOP Instance UID that arrived again."""

    study_instance_uid: str
    series_instance_uid: str
    path: str
    content_sha256: str | None  # None: recorded before content hashes were kept


@dataclass(frozen=True)
class RecordOutcome:
    new: bool
    # One of pacsflow's own objects (registered in result_objects) given back by a PACS.
    ours: bool = False
    known: KnownInstance | None = None  # set when the SOP Instance UID was known already


class StudyStore:
    """Queries about studies as received and processed; one instance per process."""

    def __init__(self, database: Database) -> None:
        self.database = database

    # -- ingest -----------------------------------------------------------------------------

    def record_instance(
        self,
        header: InstanceHeader,
        *,
        path: str,
        size_bytes: int,
        calling_ae_title: str,
        content_sha256: str | None = None,
        as_prior: bool = False,
        before_commit: Callable[[], object] | None = None,
    ) -> RecordOutcome:
        """Record a stored instance in one round trip; a SOP Instance UID seen before changes
        nothing, and the outcome names what was recorded under it (to compare contents).

        ``as_prior``: the instance came because this node moved the study here as a prior
        (C-MOVE sub-operation): it is kept, but never opens, re-opens or processes its study
        (a study pacsflow analysed before comes back with pacsflow's own SR in it). The same
        holds, without the flag, for any object pacsflow itself built and sent.

        ``before_commit``: the row is written in a transaction, and ``before_commit()`` runs
        between the statement and the commit (the node waits there for its file to be
        durable, so the two overlap); when it raises, nothing is committed and the error
        propagates.
        """
        params = {
            **header.__dict__,
            "path": path,
            "size_bytes": size_bytes,
            "calling_ae_title": calling_ae_title,
            "content_sha256": content_sha256,
            "as_prior": as_prior,
            "anatomic_regions": Jsonb([list(region) for region in header.anatomic_regions]),
        }
        with self.database.connection() as conn:
            if before_commit is None:
                row = conn.execute(_RECORD_INSTANCE, params).fetchone()
            else:
                with conn.transaction():
                    row = conn.execute(_RECORD_INSTANCE, params).fetchone()
                    before_commit()
        known = None
        if row["known_path"] is not None:
            known = KnownInstance(
                row["known_study_instance_uid"],
                row["known_series_instance_uid"],
                row["known_path"],
                row["known_content_sha256"],
            )
        return RecordOutcome(new=bool(row["new"]), ours=bool(row["ours"]), known=known)

    def record_changed_duplicate(
        self,
        *,
        sop_instance_uid: str,
        study_instance_uid: str,
        calling_ae_title: str,
        first_content_sha256: str,
        received_content_sha256: str,
        action: str,
        replaced_by: tuple[str, int] | None = None,
    ) -> None:
        """Record a known SOP Instance UID that arrived with other content: a node event
        with both hashes and, when the new content replaced the first, the instance row's
        new path, size and hash, in the same transaction."""
        with self.database.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO node_events (kind, detail, calling_ae_title, study_instance_uid,"
                " sop_instance_uid, first_content_sha256, received_content_sha256)"
                " VALUES ('changed_duplicate', %s, %s, %s, %s, %s, %s)",
                (
                    action,
                    calling_ae_title,
                    study_instance_uid,
                    sop_instance_uid,
                    first_content_sha256,
                    received_content_sha256,
                ),
            )
            if replaced_by is not None:
                path, size_bytes = replaced_by
                conn.execute(
                    "UPDATE instances SET path = %s, size_bytes = %s, content_sha256 = %s,"
                    " received_at = clock_timestamp() WHERE sop_instance_uid = %s",
                    (path, size_bytes, received_content_sha256, sop_instance_uid),
                )

    def instance_paths(self) -> set[str]:
        with self.database.connection() as conn:
            return {row["path"] for row in conn.execute("SELECT path FROM instances")}

    def record_event(self, kind: str, detail: str, **fields: str) -> None:
        """Record something the node refused or noticed (rejected association, bad dataset)."""
        columns = ["kind", "detail", *fields]
        values = [kind, detail, *fields.values()]
        placeholders = ", ".join(["%s"] * len(values))
        with self.database.connection() as conn:
            conn.execute(
                f"INSERT INTO node_events ({', '.join(columns)}) VALUES ({placeholders})",  # type: ignore[arg-type]
                values,
            )

    # -- study close ------------------------------------------------------------------------

    def open_studies(self) -> tuple[datetime, list[StudyActivity]]:
        """The database clock and every study still receiving."""
        with self.database.connection() as conn:
            now = conn.execute("SELECT clock_timestamp() AS now").fetchone()["now"]
            rows = conn.execute(
                "SELECT study_instance_uid, generation, first_received_at, last_received_at"
                " FROM studies WHERE state = 'receiving' ORDER BY last_received_at"
            ).fetchall()
        return now, [StudyActivity(**row) for row in rows]

    def series_of(self, study_instance_uid: str) -> list[SeriesInfo]:
        """The study's series as routing sees them: pacsflow's own result series that a PACS
        gave back are never inputs."""
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT r.series_instance_uid, r.modality, r.body_part_examined,"
                " r.series_description, r.protocol_name, r.sop_class_uids, r.station_name,"
                " r.anatomic_regions, s.study_description, s.calling_ae_title"
                " FROM series r JOIN studies s USING (study_instance_uid)"
                " WHERE r.study_instance_uid = %s AND NOT r.ours"
                " ORDER BY r.series_number NULLS LAST, r.series_instance_uid",
                (study_instance_uid,),
            ).fetchall()
        return [
            SeriesInfo(
                **{
                    **row,
                    "sop_class_uids": tuple(row["sop_class_uids"]),
                    "anatomic_regions": tuple(
                        (str(scheme), str(value), str(meaning))
                        for scheme, value, meaning in row["anatomic_regions"]
                    ),
                }
            )
            for row in rows
        ]

    def close_study(
        self,
        activity: StudyActivity,
        route: Route,
        close_reason: str,
        quiet_seconds: float,
        priority: StudyPriority | None = None,
        image_count: int | None = None,
    ) -> str | None:
        """Close one generation of a study and queue its run (or mark it unrouted).

        Returns the study key, or None when the study moved on meanwhile (a new instance
        arrived): the condition is re-checked inside the same statement, so nothing is closed
        early.
        ``priority`` places the run in the queue, ``image_count`` in its lane (see
        ``integrations.dicom.priority``).
        """
        state = "queued" if route.is_routed else "unrouted"
        with self.database.connection() as conn, conn.transaction():
            closed = conn.execute(
                "UPDATE studies SET state = %(state)s, closed_at = clock_timestamp(),"
                " close_reason = %(reason)s, route = %(route)s, unrouted_reason = %(unrouted)s,"
                " updated_at = clock_timestamp()"
                " WHERE study_instance_uid = %(uid)s AND generation = %(generation)s"
                "   AND state = 'receiving'"
                "   AND last_received_at = %(last)s"
                " RETURNING closed_at, study_key",
                {
                    "state": state,
                    "reason": close_reason,
                    "route": Jsonb(route.to_json()),
                    "unrouted": route.unrouted_reason,
                    "uid": activity.study_instance_uid,
                    "generation": activity.generation,
                    "last": activity.last_received_at,
                },
            ).fetchone()
            if closed is None:
                return None
            if route.is_routed:
                self._enqueue(
                    conn,
                    activity.study_instance_uid,
                    activity.generation,
                    "closed",
                    closed["closed_at"],
                    priority,
                    image_count,
                )
        return str(closed["study_key"])

    def _enqueue(
        self,
        conn: Any,
        study_instance_uid: str,
        generation: int,
        reason: str,
        closed_at: datetime | None,
        priority: StudyPriority | None = None,
        image_count: int | None = None,
    ) -> int | None:
        """Queue a run; without ``priority`` (a rerun), the study's last decided priority and
        image count are kept."""
        conn.execute(
            "UPDATE dispatch SET state = 'superseded', finished_at = clock_timestamp()"
            " WHERE study_instance_uid = %s AND state = 'queued' AND generation < %s",
            (study_instance_uid, generation),
        )
        if priority is None:
            last = conn.execute(
                "SELECT priority, priority_rule, priority_reason, image_count FROM dispatch"
                " WHERE study_instance_uid = %s ORDER BY id DESC LIMIT 1",
                (study_instance_uid,),
            ).fetchone()
            value, rule, why, images = (
                (
                    last["priority"],
                    last["priority_rule"],
                    last["priority_reason"],
                    last["image_count"],
                )
                if last
                else (0, "", "", None)
            )
        else:
            value, rule, why = priority.value, priority.rule, priority.decided_by
            images = image_count
        row = conn.execute(
            "INSERT INTO dispatch (study_instance_uid, generation, reason, closed_at, priority,"
            " priority_rule, priority_reason, image_count) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING RETURNING id",
            (study_instance_uid, generation, reason, closed_at, value, rule, why, images),
        ).fetchone()
        conn.execute(f"NOTIFY {DISPATCH_CHANNEL}")
        return None if row is None else int(row["id"])

    def request_rerun(self, study_instance_uid: str) -> int | None:
        """Queue a run of the study's current generation; None when one is already waiting."""
        with self.database.connection() as conn, conn.transaction():
            study = conn.execute(
                "SELECT generation, state, closed_at FROM studies WHERE study_instance_uid = %s FOR UPDATE",
                (study_instance_uid,),
            ).fetchone()
            if study is None:
                raise KeyError(study_instance_uid)
            return self._enqueue(
                conn, study_instance_uid, study["generation"], "rerun", study["closed_at"]
            )

    # -- dispatch ---------------------------------------------------------------------------

    def claim(
        self, worker: str, lease_seconds: float, max_images: int | None = None
    ) -> DispatchItem | None:
        """Take the next queued run, skipping studies that already have one running; with
        ``max_images`` (an express worker), only a study of at most that many images."""
        with self.database.connection() as conn, conn.transaction():
            row = conn.execute(
                _CLAIM, {"worker": worker, "lease": lease_seconds, "max_images": max_images}
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE studies SET state = 'processing', updated_at = clock_timestamp()"
                " WHERE study_instance_uid = %s AND generation = %s AND state IN ('queued', 'done', 'failed')",
                (row["study_instance_uid"], row["generation"]),
            )
        return DispatchItem(**row)

    def extend_lease(self, dispatch_id: int, lease_seconds: float, worker: str) -> bool:
        """Heartbeat: renew ``worker``'s lease; False when the run is no longer its own."""
        with self.database.connection() as conn:
            row = conn.execute(
                "UPDATE dispatch SET heartbeat_at = clock_timestamp(),"
                " lease_expires_at = clock_timestamp() + make_interval(secs => %s)"
                " WHERE id = %s AND state = 'running' AND worker = %s RETURNING id",
                (lease_seconds, dispatch_id, worker),
            ).fetchone()
        return row is not None

    def attach_flow_run(self, dispatch_id: int, flow_run_id: str) -> None:
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE dispatch SET flow_run_id = %s WHERE id = %s", (flow_run_id, dispatch_id)
            )

    def finish_dispatch(
        self, dispatch_id: int, *, succeeded: bool, error: str | None = None, worker: str
    ) -> bool:
        """Record the run's end; False when ``worker`` had lost it (its lease expired and
        the study was queued again): the re-queued run's outcome is left alone."""
        with self.database.connection() as conn:
            row = conn.execute(
                "UPDATE dispatch SET state = %s, finished_at = clock_timestamp(), error = %s"
                " WHERE id = %s AND state = 'running' AND worker = %s RETURNING id",
                ("completed" if succeeded else "failed", error, dispatch_id, worker),
            ).fetchone()
        return row is not None

    def requeue_dispatch(
        self, dispatch_id: int, *, error: str, worker: str, retry_after_seconds: float = 0.0
    ) -> bool:
        """Queue ``worker``'s run again (it was cut short by a transient cause, such as the
        database restarting or the Prefect API dying), claimable after
        ``retry_after_seconds``; False when the run is no longer its own. Its Prefect flow
        run, if it had one, goes to ``dispatch_lost_runs`` (set to Crashed unless it ended)."""
        with self.database.connection() as conn, conn.transaction():
            row = conn.execute(
                "SELECT flow_run_id, study_instance_uid FROM dispatch"
                " WHERE id = %s AND state = 'running' AND worker = %s FOR UPDATE",
                (dispatch_id, worker),
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "UPDATE dispatch SET state = 'queued', worker = NULL, started_at = NULL,"
                " heartbeat_at = NULL, flow_run_id = NULL, error = %s,"
                " retry_after = clock_timestamp() + make_interval(secs => %s) WHERE id = %s",
                (error, retry_after_seconds, dispatch_id),
            )
            if row["flow_run_id"] is not None:
                conn.execute(
                    "INSERT INTO dispatch_lost_runs (flow_run_id, dispatch_id,"
                    " study_instance_uid, worker, reason) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT DO NOTHING",
                    (row["flow_run_id"], dispatch_id, row["study_instance_uid"], worker, error),
                )
        return True

    def requeue_expired(self) -> list[str]:
        """Runs whose worker vanished (lease expired): queue them again, or fail them when a
        newer run is already waiting. Their Prefect flow runs go to ``dispatch_lost_runs``
        (see :meth:`lost_runs`). Returns the study UIDs touched."""
        touched = []
        with self.database.connection() as conn, conn.transaction():
            rows = conn.execute(
                "SELECT id, study_instance_uid, worker, flow_run_id FROM dispatch"
                " WHERE state = 'running' AND lease_expires_at < clock_timestamp()"
                " FOR UPDATE SKIP LOCKED"
            ).fetchall()
            for row in rows:
                waiting = conn.execute(
                    "SELECT 1 FROM dispatch WHERE study_instance_uid = %s AND state = 'queued'",
                    (row["study_instance_uid"],),
                ).fetchone()
                if waiting:
                    conn.execute(
                        "UPDATE dispatch SET state = 'failed', finished_at = clock_timestamp(),"
                        " error = 'worker lost; superseded by a queued run' WHERE id = %s",
                        (row["id"],),
                    )
                else:
                    conn.execute(
                        "UPDATE dispatch SET state = 'queued', worker = NULL, started_at = NULL,"
                        " heartbeat_at = NULL, flow_run_id = NULL,"
                        " error = 'worker lost; queued again' WHERE id = %s",
                        (row["id"],),
                    )
                if row["flow_run_id"] is not None:
                    conn.execute(
                        "INSERT INTO dispatch_lost_runs (flow_run_id, dispatch_id,"
                        " study_instance_uid, worker) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT DO NOTHING",
                        (
                            row["flow_run_id"],
                            row["id"],
                            row["study_instance_uid"],
                            row["worker"] or "",
                        ),
                    )
                touched.append(row["study_instance_uid"])
            if touched:
                conn.execute(f"NOTIFY {DISPATCH_CHANNEL}")
        return touched

    # -- the work-pool route ----------------------------------------------------------------

    def hand_to_work_pool(
        self, pool_worker: str, schedule: Callable[[DispatchItem], str]
    ) -> DispatchItem | None:
        """Give the next queued run to a Prefect work pool; None when nothing is queued.

        ``schedule`` creates the flow run (idempotently, keyed by the row) and returns its
        ID. It is called with the row locked, and the row is marked running under
        ``pool_worker`` with that run in the same transaction, so a row becomes one run,
        once, even with several dispatchers. A study whose earlier run is still with the pool
        waits, as on the warm route. If ``schedule`` raises, the row stays queued.
        """
        with self.database.connection() as conn, conn.transaction():
            row = conn.execute(_NEXT_FOR_WORK_POOL).fetchone()
            if row is None:
                return None
            item = DispatchItem(**row)
            flow_run_id = schedule(item)
            conn.execute(
                "UPDATE dispatch SET state = 'running', started_at = clock_timestamp(),"
                " worker = %s, flow_run_id = %s, lease_expires_at = 'infinity' WHERE id = %s",
                (pool_worker, flow_run_id, item.id),
            )
            conn.execute(
                "UPDATE studies SET state = 'processing', updated_at = clock_timestamp()"
                " WHERE study_instance_uid = %s AND generation = %s"
                "   AND state IN ('queued', 'done', 'failed')",
                (item.study_instance_uid, item.generation),
            )
        return item

    def work_pool_runs(self, pool_worker: str) -> list[tuple[int, str]]:
        """(dispatch ID, flow run ID) of the runs handed to the pool and not finished."""
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT id, flow_run_id FROM dispatch WHERE state = 'running' AND worker = %s"
                " AND flow_run_id IS NOT NULL ORDER BY id",
                (pool_worker,),
            ).fetchall()
        return [(int(row["id"]), str(row["flow_run_id"])) for row in rows]

    def lost_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """Flow runs of vanished workers not yet set to Crashed in Prefect, oldest first."""
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT flow_run_id, dispatch_id, study_instance_uid, worker, reason, lost_at"
                " FROM dispatch_lost_runs WHERE crashed_at IS NULL ORDER BY lost_at LIMIT %s",
                (limit,),
            ).fetchall()

    def mark_run_crashed(self, flow_run_id: str, error: str | None = None) -> None:
        """The lost run is Crashed in Prefect (``error``: why setting it failed, to retry)."""
        with self.database.connection() as conn:
            if error is None:
                conn.execute(
                    "UPDATE dispatch_lost_runs SET crashed_at = clock_timestamp(), error = NULL"
                    " WHERE flow_run_id = %s",
                    (flow_run_id,),
                )
            else:
                conn.execute(
                    "UPDATE dispatch_lost_runs SET error = %s WHERE flow_run_id = %s",
                    (error, flow_run_id),
                )

    def first_instances(self, study_instance_uid: str) -> list[tuple[str, int]]:
        """Per series, the spool path of its first instance (by instance number) and how many
        instances the series holds."""
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT ON (i.series_instance_uid) i.path, s.instance_count"
                " FROM instances i JOIN series s USING (series_instance_uid)"
                " WHERE i.study_instance_uid = %s"
                " ORDER BY i.series_instance_uid, i.instance_number NULLS LAST, i.sop_instance_uid",
                (study_instance_uid,),
            ).fetchall()
        return [(row["path"], int(row["instance_count"])) for row in rows]

    # -- studies as the flow sees them ------------------------------------------------------

    def study(self, study_instance_uid: str) -> StudyRecord | None:
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT * FROM studies WHERE study_instance_uid = %s", (study_instance_uid,)
            ).fetchone()
        return None if row is None else StudyRecord.from_row(row)

    def study_by_key(self, study_key: str) -> StudyRecord | None:
        """The study of an opaque study key (what Prefect runs are given)."""
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT * FROM studies WHERE study_key = %s", (study_key.strip().upper(),)
            ).fetchone()
        return None if row is None else StudyRecord.from_row(row)

    def find_studies(self, term: str) -> list[tuple[StudyRecord, list[str]]]:
        """Studies whose accession number, Study Instance UID, patient ID or study key is
        ``term``, newest first, each with its Prefect flow run IDs (newest first)."""
        term = term.strip()
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT s.*, coalesce(array_agg(d.flow_run_id::text ORDER BY d.id DESC)"
                "   FILTER (WHERE d.flow_run_id IS NOT NULL), '{}') AS flow_run_ids"
                " FROM studies s LEFT JOIN dispatch d USING (study_instance_uid)"
                " WHERE s.state <> 'prior' AND (s.accession_number = %(term)s"
                "   OR s.study_instance_uid = %(term)s OR s.patient_id = %(term)s"
                "   OR s.study_key = upper(%(term)s))"
                " GROUP BY s.study_instance_uid ORDER BY s.first_received_at DESC",
                {"term": term},
            ).fetchall()
        return [(StudyRecord.from_row(row), list(row["flow_run_ids"])) for row in rows]

    def instances(
        self, study_instance_uid: str, series: Iterable[str] | None = None
    ) -> list[InstanceRecord]:
        query = (
            "SELECT i.sop_instance_uid, i.series_instance_uid, i.study_instance_uid, i.sop_class_uid,"
            " i.transfer_syntax_uid, i.instance_number, i.path, s.modality"
            " FROM instances i JOIN series s USING (series_instance_uid)"
            " WHERE i.study_instance_uid = %s"
        )
        params: list[Any] = [study_instance_uid]
        if series is not None:
            query += " AND i.series_instance_uid = ANY(%s)"
            params.append(list(series))
        query += " ORDER BY s.series_number NULLS LAST, i.series_instance_uid, i.instance_number NULLS LAST, i.sop_instance_uid"
        with self.database.connection() as conn:
            rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
        return [InstanceRecord(**row) for row in rows]

    def set_study_state(self, study_instance_uid: str, generation: int, state: str) -> None:
        """Final state of a processed generation; a newer generation is left alone."""
        with self.database.connection() as conn:
            conn.execute(
                "UPDATE studies SET state = %s, updated_at = clock_timestamp()"
                " WHERE study_instance_uid = %s AND generation = %s AND state IN ('queued', 'processing', 'done', 'failed')",
                (state, study_instance_uid, generation),
            )

    def register_prior(
        self, study_instance_uid: str, patient_id: str, accession_number: str
    ) -> None:
        """Announce a study about to be moved here as a prior: it is never processed itself.

        A study pacsflow already knows keeps its state.
        """
        with self.database.connection() as conn:
            conn.execute(
                "INSERT INTO studies (study_instance_uid, patient_id, accession_number, state)"
                " VALUES (%s, %s, %s, 'prior') ON CONFLICT (study_instance_uid) DO NOTHING",
                (study_instance_uid, patient_id, accession_number),
            )

    def record_step(
        self,
        study_instance_uid: str,
        generation: int,
        step: str,
        state: str,
        detail: dict[str, Any] | None = None,
        flow_run_id: str | None = None,
        started_at: datetime | None = None,
    ) -> None:
        with self.database.connection() as conn:
            conn.execute(
                "INSERT INTO study_steps (study_instance_uid, generation, step, state, detail,"
                " flow_run_id, started_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (study_instance_uid, generation, step) DO UPDATE SET"
                " state = EXCLUDED.state, detail = EXCLUDED.detail, flow_run_id = EXCLUDED.flow_run_id,"
                " started_at = EXCLUDED.started_at, finished_at = clock_timestamp()",
                (
                    study_instance_uid,
                    generation,
                    step,
                    state,
                    Jsonb(json.loads(json.dumps(detail or {}, default=str))),
                    flow_run_id,
                    started_at,
                ),
            )
        metrics.step_recorded(step, state, started_at)

    def steps(
        self, study_instance_uid: str, generation: int | None = None
    ) -> dict[str, dict[str, Any]]:
        query = "SELECT * FROM study_steps WHERE study_instance_uid = %s"
        params: list[Any] = [study_instance_uid]
        if generation is not None:
            query += " AND generation = %s"
            params.append(generation)
        with self.database.connection() as conn:
            rows = conn.execute(query, params).fetchall()  # type: ignore[arg-type]
        return {row["step"]: row for row in rows}
