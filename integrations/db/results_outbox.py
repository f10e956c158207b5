"""The results outbox in PostgreSQL: built result objects waiting for their destination (I/O).

The flow queues each result object it built (the file is already on disk) and moves on; the
results sender (:mod:`integrations.dicom.result_sender`) delivers. A row names one object, one
destination (``pacs``: the ``[pacs]`` peer) and the SHA-256 of the file's bytes. Delivery
order: per destination and study, the report (SR) before the overlays, each in queue order;
among studies, the highest ``priority`` first, then the oldest. Leases, backoff and the claim
are the EMR outboxes' own (:class:`integrations.db.outbox.LeasedQueue`).

What was stored is recorded with its hash: a row whose SOP Instance UID already reached the
same destination with the same hash is marked ``sent`` ("already stored") without sending,
so a rerun with the same inputs sends nothing the PACS already has. Queuing a new content
for a UID that still waits supersedes the older content (it will never be sent).

Durability: queuing waits for the WAL flush (a queued result survives anything); the
records of an attempt do not (a PostgreSQL crash may forget the last "sent", and the object
is then sent once more: same UID, same bytes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydicom.filereader import read_file_meta_info

from integrations.db.outbox import LeasedQueue

RESULTS_CHANNEL = "pacsflow_results_outbox"
PACS_DESTINATION = "pacs"
Part = Literal["report", "overlay"]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class QueuedObject:
    """One result file to deliver, as the flow saved it."""

    sop_instance_uid: str
    sop_class_uid: str
    kind: str
    path: str
    content_sha256: str

    @classmethod
    def from_file(cls, path: str | Path, kind: str) -> QueuedObject:
        meta = read_file_meta_info(path)
        return cls(
            sop_instance_uid=str(meta.MediaStorageSOPInstanceUID),
            sop_class_uid=str(meta.MediaStorageSOPClassUID),
            kind=kind,
            path=str(path),
            content_sha256=file_sha256(Path(path)),
        )


@dataclass(frozen=True)
class ResultDelivery:
    """A claimed row: one object to one destination."""

    id: int
    destination: str
    study_instance_uid: str
    generation: int
    sop_instance_uid: str
    sop_class_uid: str
    kind: str
    part: str
    path: str
    content_sha256: str
    attempts: int  # including this one
    created_at: datetime
    give_up_at: datetime
    claimed_at: datetime


class ResultsOutbox(LeasedQueue):
    table = "results_outbox"
    partition = "destination, study_instance_uid"
    order = "CASE part WHEN 'report' THEN 0 ELSE 1 END, id"
    channel = RESULTS_CHANNEL

    def enqueue(
        self,
        *,
        destination: str,
        study_instance_uid: str,
        generation: int,
        part: Part,
        objects: Sequence[QueuedObject],
        give_up_after_hours: float,
        priority: int = 0,
    ) -> int:
        """Queue ``objects`` for ``destination``; returns how many rows were added (an object
        already waiting with the same content is not queued twice)."""
        if not objects:
            return 0
        added = 0
        with self.database.connection() as conn, conn.transaction():
            for item in objects:
                conn.execute(
                    "UPDATE results_outbox SET state = 'superseded', leased_until = NULL,"
                    " last_error = 'a newer content of this object was queued'"
                    " WHERE destination = %s AND sop_instance_uid = %s AND state = 'pending'"
                    " AND content_sha256 <> %s",
                    (destination, item.sop_instance_uid, item.content_sha256),
                )
                row = conn.execute(
                    "INSERT INTO results_outbox (destination, study_instance_uid, generation,"
                    " sop_instance_uid, sop_class_uid, kind, part, path, content_sha256, priority,"
                    " give_up_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                    " clock_timestamp() + make_interval(secs => %s))"
                    " ON CONFLICT (destination, sop_instance_uid, content_sha256)"
                    " WHERE state = 'pending' DO NOTHING RETURNING id",
                    (
                        destination,
                        study_instance_uid,
                        generation,
                        item.sop_instance_uid,
                        item.sop_class_uid,
                        item.kind,
                        part,
                        item.path,
                        item.content_sha256,
                        priority,
                        give_up_after_hours * 3600.0,
                    ),
                ).fetchone()
                added += row is not None
            conn.execute(f"NOTIFY {RESULTS_CHANNEL}")
        return added

    def claim(self, lease_seconds: float) -> ResultDelivery | None:
        row = self._claim_row(lease_seconds)
        if row is None:
            return None
        return ResultDelivery(
            id=row["id"],
            destination=row["destination"],
            study_instance_uid=row["study_instance_uid"],
            generation=row["generation"],
            sop_instance_uid=row["sop_instance_uid"],
            sop_class_uid=row["sop_class_uid"],
            kind=row["kind"],
            part=row["part"],
            path=row["path"],
            content_sha256=row["content_sha256"],
            attempts=row["attempts"],
            created_at=row["created_at"],
            give_up_at=row["give_up_at"],
            claimed_at=row["claimed_at"],
        )

    def mark_superseded(self, item_id: int) -> None:
        self._update(
            item_id,
            "state = 'superseded', leased_until = NULL,"
            " last_error = 'a newer content of this object was queued'",
            {},
            durable=False,
        )

    def replaced_by_newer_result(self, sop_instance_uid: str) -> bool:
        """True when a newer build superseded this result object (new inputs, new UIDs): an
        old SR still waiting must never reach the PACS beside the one that replaced it."""
        with self.database.connection() as conn:
            row = conn.execute(
                "SELECT status FROM result_objects WHERE sop_instance_uid = %s",
                (sop_instance_uid,),
            ).fetchone()
        return row is not None and row["status"] == "superseded"

    def stored(self, destination: str, sop_instance_uid: str) -> list[dict[str, Any]]:
        """What ``destination`` was given under this UID: hash and time, newest first."""
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT content_sha256, sent_at FROM results_outbox WHERE destination = %s"
                " AND sop_instance_uid = %s AND state = 'sent' ORDER BY sent_at DESC",
                (destination, sop_instance_uid),
            ).fetchall()

    def retry_now(self, give_up_after_hours: float, ids: list[int] | None = None) -> int:
        """Re-drive deliveries now: failed ones go back to pending with a fresh retry window,
        waiting ones are due at once. All of them, or those ``ids``; returns how many."""
        condition = "state IN ('pending', 'failed')" + (" AND id = ANY(%(ids)s)" if ids else "")
        with self.database.connection() as conn:
            cursor = conn.execute(
                "UPDATE results_outbox SET"  # type: ignore[arg-type]
                " give_up_at = CASE WHEN state = 'failed'"
                "   THEN clock_timestamp() + make_interval(secs => %(window)s) ELSE give_up_at END,"
                " failure_alert_at = CASE WHEN state = 'failed' THEN NULL ELSE failure_alert_at END,"
                " late_alert_at = CASE WHEN state = 'failed' THEN NULL ELSE late_alert_at END,"
                " state = 'pending', failed_at = NULL, leased_until = NULL,"
                f" next_attempt_at = clock_timestamp() WHERE {condition}",
                {"ids": ids or [], "window": give_up_after_hours * 3600.0},
            )
            conn.execute(f"NOTIFY {RESULTS_CHANNEL}")
            return cursor.rowcount

    def backing_off(self) -> list[str]:
        """Destinations with deliveries waiting after a failed attempt."""
        with self.database.connection() as conn:
            rows = conn.execute(
                "SELECT DISTINCT destination FROM results_outbox WHERE state = 'pending'"
                " AND last_error IS NOT NULL AND next_attempt_at > clock_timestamp()"
            ).fetchall()
        return [row["destination"] for row in rows]

    def due_now(self, destination: str) -> int:
        """Every delivery waiting for ``destination`` may be attempted now."""
        with self.database.connection() as conn:
            cursor = conn.execute(
                "UPDATE results_outbox SET next_attempt_at = clock_timestamp()"
                " WHERE destination = %s AND state = 'pending'"
                " AND next_attempt_at > clock_timestamp()",
                (destination,),
            )
            return cursor.rowcount

    def late(self, older_than_seconds: float) -> list[dict[str, Any]]:
        """Pending, not yet alerted rows of every study with a row queued over ``older_than_seconds`` ago.

        A study's report and overlays are queued moments apart; taking the whole study once
        one of its rows is late tells the operators about it in one alert, not two.
        """
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM results_outbox AS queued WHERE state = 'pending'"
                " AND late_alert_at IS NULL AND EXISTS ("
                "  SELECT 1 FROM results_outbox AS late WHERE late.state = 'pending'"
                "  AND late.late_alert_at IS NULL AND late.destination = queued.destination"
                "  AND late.study_instance_uid = queued.study_instance_uid"
                "  AND late.created_at < clock_timestamp() - make_interval(secs => %s))"
                " ORDER BY id",
                (older_than_seconds,),
            ).fetchall()

    def failed_unalerted(self) -> list[dict[str, Any]]:
        with self.database.connection() as conn:
            return conn.execute(
                "SELECT * FROM results_outbox WHERE state = 'failed'"
                " AND failure_alert_at IS NULL ORDER BY id"
            ).fetchall()

    def mark_alerted(self, ids: Sequence[int], alert: Literal["late", "failure"]) -> None:
        column = "late_alert_at" if alert == "late" else "failure_alert_at"
        with self.database.connection() as conn:
            conn.execute(
                f"UPDATE results_outbox SET {column} = clock_timestamp()"  # type: ignore[arg-type]
                " WHERE id = ANY(%s)",
                (list(ids),),
            )

    def study_summary(self, destination: str, study_instance_uid: str) -> dict[str, Any]:
        """Counts per state and the last store time of one study's deliveries."""
        with self.database.connection() as conn:
            row: dict[str, Any] = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'pending') AS pending,"
                " count(*) FILTER (WHERE state = 'sent' AND outcome = 'stored') AS stored,"
                " count(*) FILTER (WHERE state = 'sent' AND outcome = 'already stored')"
                "   AS already_stored,"
                " count(*) FILTER (WHERE state = 'failed') AS failed,"
                " max(sent_at) AS last_stored_at, max(attempts) AS max_attempts"
                " FROM results_outbox WHERE destination = %s AND study_instance_uid = %s"
                " AND state <> 'superseded'",
                (destination, study_instance_uid),
            ).fetchone()
        return row
