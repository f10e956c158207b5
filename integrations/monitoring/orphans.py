"""Orphaned results: analysed, but the SR is not in the PACS, or the ORU was never
acknowledged (I/O: SQL and C-FIND to the PACS).

A live SR (not superseded) built more than ``[monitoring] orphan_grace_minutes`` ago is
looked for in the PACS with a Study Root C-FIND at IMAGE level, one query per SR series:
the results outbox saying "sent" is not proof, since a PACS may drop, reject later or
purge. An ORU^R01 to the EMR older than the grace period and not acknowledged (AA) is an
orphan too. The PACS not answering is reported as such (never as "no orphans").
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from pydicom import Dataset

from integrations.db.connection import Database
from integrations.dicom.scu import DicomClient, pacs_peer
from integrations.errors import PacsflowError
from integrations.monitoring.collect import fetch_rows
from integrations.monitoring.report import Orphan
from integrations.settings import Settings

log = logging.getLogger(__name__)


def _image_query(study_instance_uid: str, series_instance_uid: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_instance_uid
    query.SeriesInstanceUID = series_instance_uid
    query.SOPInstanceUID = ""
    return query


def missing_reports(
    database: Database,
    settings: Settings,
    since: datetime,
    now: datetime,
    client: DicomClient | None = None,
) -> tuple[list[Orphan], int, str]:
    """SRs the PACS does not have: (orphans, SRs checked, error or "")."""
    grace = timedelta(minutes=settings.monitoring.orphan_grace_minutes)
    rows = fetch_rows(
        database,
        "SELECT s.study_key, ro.study_instance_uid, ro.series_instance_uid, ro.sop_instance_uid,"
        " ro.built_at, (SELECT o.state FROM results_outbox o"
        "   WHERE o.sop_instance_uid = ro.sop_instance_uid ORDER BY o.id DESC LIMIT 1) AS delivery"
        " FROM result_objects ro JOIN studies s USING (study_instance_uid)"
        " WHERE ro.kind = 'sr' AND ro.status <> 'superseded'"
        "   AND ro.built_at >= %(since)s AND ro.built_at < %(before)s"
        " ORDER BY ro.built_at LIMIT %(limit)s",
        {"since": since, "before": now - grace, "limit": settings.monitoring.max_orphan_checks},
    )
    if not rows:
        return [], 0, ""
    client = client or DicomClient(pacs_peer(settings, connect_timeout_seconds=5.0))
    series: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        series[(row["study_instance_uid"], row["series_instance_uid"])].append(row)
    orphans: list[Orphan] = []
    checked = 0
    for (study_uid, series_uid), reports in series.items():
        try:
            matches = client.find(_image_query(study_uid, series_uid), study_instance_uid=study_uid)
        except PacsflowError as error:
            log.error("orphan check stopped: C-FIND to the PACS failed: %s", error)
            return orphans, checked, f"C-FIND to the PACS failed: {error}"
        found = {str(getattr(match, "SOPInstanceUID", "")) for match in matches}
        for report in reports:
            checked += 1
            if report["sop_instance_uid"] in found:
                continue
            delivery = report["delivery"] or "never queued"
            orphans.append(
                Orphan(
                    report["study_key"],
                    study_uid,
                    "sr_not_in_pacs",
                    report["sop_instance_uid"],
                    f"SR built {report['built_at'].astimezone(UTC):%Y-%m-%d %H:%M} UTC not"
                    " found by C-FIND;"
                    f" results outbox: {delivery}",
                )
            )
    return orphans, checked, ""


def unacknowledged_results(
    database: Database, settings: Settings, since: datetime, now: datetime
) -> list[Orphan]:
    """ORU^R01 messages to the EMR older than the grace period and not acknowledged."""
    grace = timedelta(minutes=settings.monitoring.orphan_grace_minutes)
    rows = fetch_rows(
        database,
        "SELECT coalesce(s.study_key, '') AS study_key,"
        " coalesce(h.study_instance_uid, '') AS study_instance_uid, h.message_control_id,"
        " h.state, h.attempts, coalesce(h.ack_code, '') AS ack_code FROM hl7_outbox h"
        " LEFT JOIN studies s USING (study_instance_uid)"
        " WHERE h.destination = 'emr' AND h.message_type LIKE 'ORU%%' AND h.state <> 'sent'"
        "   AND h.created_at >= %(since)s AND h.created_at < %(before)s ORDER BY h.id",
        {"since": since, "before": now - grace},
    )
    return [
        Orphan(
            row["study_key"],
            row["study_instance_uid"],
            "oru_not_acknowledged",
            row["message_control_id"],
            f"ORU {row['state']} after {row['attempts']} attempt(s)"
            + (f", last answer {row['ack_code']}" if row["ack_code"] else ""),
        )
        for row in rows
    ]
