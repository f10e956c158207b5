"""What the monitoring report and the metrics read from PostgreSQL (I/O: SQL only).

Every query returns study keys, UIDs, counts and ages, never a patient's name, ID, birth
date or accession number, so nothing here can carry patient data into the report IT reads,
the Prefect UI or ``/metrics``. The metrics collector (:mod:`integrations.metrics`) and the
daily report use the same queries: one definition of a backlog, a drop, a rate.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from integrations.db.connection import Database
from integrations.monitoring.report import (
    DayRate,
    InterfaceDrop,
    OutboxBacklog,
    StepLatency,
    StudyIssue,
)
from integrations.settings import Settings

# What the node and the HL7 listener record when they refuse something (node_events.kind).
INTERFACE_DROP_KINDS = (
    "association_rejected",
    "connection_refused",
    "pdu_refused",
    "store_refused",
)
MAX_SOURCES_NAMED = 5

_STEP_PERCENTILES = (
    " count(*) AS count, count(*) FILTER (WHERE state = 'failed') AS failed,"
    " percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,"
    " percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90,"
    " percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) AS p95,"
    " percentile_cont(0.99) WITHIN GROUP (ORDER BY seconds) AS p99,"
    " max(seconds) AS max"
)


def fetch_rows(database: Database, query: str, params: dict[str, Any] | None = None) -> list[Any]:
    with database.connection() as conn:
        return list(conn.execute(query, params or {}).fetchall())  # type: ignore[arg-type]


def failed_studies(database: Database, since: datetime) -> list[StudyIssue]:
    rows = fetch_rows(
        database,
        "SELECT s.study_key, s.study_instance_uid, s.updated_at,"
        " (SELECT st.step FROM study_steps st WHERE st.study_instance_uid = s.study_instance_uid"
        "   AND st.generation = s.generation AND st.state = 'failed'"
        "   ORDER BY st.finished_at DESC LIMIT 1) AS step"
        " FROM studies s WHERE s.state = 'failed' AND s.updated_at >= %(since)s"
        " ORDER BY s.updated_at",
        {"since": since},
    )
    return [
        StudyIssue(
            row["study_key"],
            row["study_instance_uid"],
            "failed",
            row["updated_at"],
            f"step {row['step']} failed" if row["step"] else "the run failed",
        )
        for row in rows
    ]


def unrouted_studies(database: Database, since: datetime) -> list[StudyIssue]:
    rows = fetch_rows(
        database,
        "SELECT study_key, study_instance_uid, closed_at, coalesce(unrouted_reason, '') AS reason"
        " FROM studies WHERE state = 'unrouted' AND coalesce(closed_at, updated_at) >= %(since)s"
        " ORDER BY closed_at",
        {"since": since},
    )
    return [
        StudyIssue(
            row["study_key"], row["study_instance_uid"], "unrouted", row["closed_at"], row["reason"]
        )
        for row in rows
    ]


def stuck_studies(database: Database, settings: Settings, now: datetime) -> list[StudyIssue]:
    """Studies that should have moved on by ``now``: still receiving past the close ceiling,
    queued or processing longer than ``[monitoring] stuck_minutes``."""
    stuck = timedelta(minutes=settings.monitoring.stuck_minutes)
    ceiling = timedelta(seconds=settings.study.max_open_seconds)
    rows = fetch_rows(
        database,
        "SELECT s.study_key, s.study_instance_uid, s.state,"
        " CASE s.state WHEN 'receiving' THEN s.first_received_at"
        "   WHEN 'queued' THEN d.queued_at ELSE coalesce(d.started_at, s.updated_at) END AS since,"
        " d.heartbeat_at"
        " FROM studies s LEFT JOIN LATERAL (SELECT * FROM dispatch WHERE"
        "   dispatch.study_instance_uid = s.study_instance_uid"
        "   AND dispatch.state IN ('queued', 'running') ORDER BY id DESC LIMIT 1) d ON true"
        " WHERE (s.state = 'receiving' AND s.first_received_at < %(receiving)s)"
        "    OR (s.state = 'queued' AND coalesce(d.queued_at, s.updated_at) < %(stuck)s)"
        "    OR (s.state = 'processing' AND coalesce(d.started_at, s.updated_at) < %(stuck)s)"
        " ORDER BY 4",
        {"receiving": now - ceiling - stuck, "stuck": now - stuck},
    )
    issues = []
    for row in rows:
        minutes = (now - row["since"]).total_seconds() / 60 if row["since"] else 0.0
        detail = {
            "receiving": f"still receiving {minutes:.0f} min after the first instance",
            "queued": f"queued for {minutes:.0f} min",
            "processing": f"processing for {minutes:.0f} min",
        }[row["state"]]
        if row["state"] == "processing" and row["heartbeat_at"] is not None:
            silent = (now - row["heartbeat_at"]).total_seconds()
            detail += f", last worker heartbeat {silent:.0f} s ago"
        issues.append(
            StudyIssue(
                row["study_key"], row["study_instance_uid"], row["state"], row["since"], detail
            )
        )
    return issues


def outbox_backlogs(database: Database, now: datetime) -> list[OutboxBacklog]:
    """Per outbox and destination: pending and failed messages, age of the oldest pending."""
    rows = fetch_rows(
        database,
        "SELECT 'results_outbox' AS outbox, destination, state, count(*) AS n,"
        "  min(created_at) AS oldest FROM results_outbox"
        "  WHERE state IN ('pending', 'failed') GROUP BY destination, state"
        " UNION ALL SELECT 'hl7_outbox', destination, state, count(*), min(created_at)"
        "  FROM hl7_outbox WHERE state IN ('pending', 'failed') GROUP BY destination, state"
        " UNION ALL SELECT 'fhir_outbox', 'fhir', state, count(*), min(created_at)"
        "  FROM fhir_outbox WHERE state IN ('pending', 'failed') GROUP BY state"
        " UNION ALL SELECT 'audit_outbox', queue, state, count(*), min(created_at)"
        "  FROM audit_outbox WHERE state IN ('pending', 'failed') GROUP BY queue, state",
    )
    found: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"pending": 0, "failed": 0, "oldest": None}
    )
    for row in rows:
        entry = found[(row["outbox"], row["destination"])]
        entry[row["state"]] = int(row["n"])
        if row["state"] == "pending":
            entry["oldest"] = row["oldest"]
    return [
        OutboxBacklog(
            outbox,
            destination,
            entry["pending"],
            entry["failed"],
            (now - entry["oldest"]).total_seconds() if entry["oldest"] else None,
        )
        for (outbox, destination), entry in sorted(found.items())
    ]


def interface_drops(database: Database, since: datetime) -> list[InterfaceDrop]:
    """Refused connections, associations, PDUs and instances (node events), and HL7
    messages the listener rejected, in the period; with the sources that caused them."""
    rows = fetch_rows(
        database,
        "SELECT kind, calling_ae_title, peer_host, count(*) AS n FROM node_events"
        " WHERE at >= %(since)s AND kind = ANY(%(kinds)s)"
        " GROUP BY kind, calling_ae_title, peer_host"
        " UNION ALL SELECT 'hl7_rejected', sending_application, peer, count(*) FROM hl7_inbox"
        " WHERE received_at >= %(since)s AND state = 'rejected'"
        " GROUP BY sending_application, peer ORDER BY 4 DESC",
        {"since": since, "kinds": list(INTERFACE_DROP_KINDS)},
    )
    counts: dict[str, int] = defaultdict(int)
    sources: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        counts[row["kind"]] += int(row["n"])
        label = "@".join(part for part in (row["calling_ae_title"], row["peer_host"]) if part)
        if label and len(sources[row["kind"]]) < MAX_SOURCES_NAMED:
            sources[row["kind"]].append(f"{label} ({row['n']})")
    return [InterfaceDrop(kind, counts[kind], tuple(sources[kind])) for kind in sorted(counts)]


def interface_drop_totals(database: Database) -> dict[str, int]:
    """Every drop ever recorded, by kind (node events are append-only: a counter)."""
    rows = fetch_rows(
        database,
        "SELECT kind, count(*) AS n FROM node_events WHERE kind = ANY(%(kinds)s) GROUP BY kind"
        " UNION ALL SELECT 'hl7_rejected', count(*) FROM hl7_inbox WHERE state = 'rejected'",
        {"kinds": list(INTERFACE_DROP_KINDS)},
    )
    return {row["kind"]: int(row["n"]) for row in rows}


def step_latencies(database: Database, since: datetime) -> list[StepLatency]:
    """Percentiles of each step's duration (study_steps), and of study close to results
    stored in the PACS (the worklist), over the steps finished in the period."""
    rows = fetch_rows(
        database,
        "SELECT step," + _STEP_PERCENTILES + " FROM ("
        "  SELECT step, state, extract(epoch FROM finished_at - started_at) AS seconds"
        "  FROM study_steps WHERE finished_at >= %(since)s AND started_at IS NOT NULL"
        "    AND state IN ('completed', 'failed')"
        "  UNION ALL SELECT 'close_to_results_stored', 'completed',"
        "  extract(epoch FROM results_stored_at - closed_at) FROM worklist"
        "  WHERE results_stored_at >= %(since)s AND closed_at IS NOT NULL"
        " ) timed GROUP BY step ORDER BY step",
        {"since": since},
    )
    return [
        StepLatency(
            row["step"],
            int(row["count"]),
            int(row["failed"]),
            *(
                float(row[key]) if row[key] is not None else None
                for key in ("p50", "p90", "p95", "p99", "max")
            ),
        )
        for row in rows
    ]


def daily_escalation_rates(
    database: Database, now: datetime, days: int
) -> dict[str, list[DayRate]]:
    """Modality -> analysed and escalated (tier Critical) studies in each of the ``days``
    24-hour windows ending at ``now``, oldest first (windows without studies included, with
    zeros); each window is dated by the day it ends on."""
    rows = fetch_rows(
        database,
        "SELECT modality, floor(extract(epoch FROM %(now)s - analysed_at) / 86400)::int AS age,"
        " count(*) AS studies, count(*) FILTER (WHERE tier = 'Critical') AS escalated"
        " FROM worklist WHERE tier IS NOT NULL AND analysed_at > %(start)s"
        "   AND analysed_at <= %(now)s GROUP BY 1, 2",
        {"now": now, "start": now - timedelta(days=days)},
    )
    by_modality: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for row in rows:
        modality = (row["modality"] or "").upper() or "UNKNOWN"
        age = min(int(row["age"]), days - 1)
        studies, escalated = by_modality[modality].get(age, (0, 0))
        by_modality[modality][age] = (
            studies + int(row["studies"]),
            escalated + int(row["escalated"]),
        )
    ages = range(days - 1, -1, -1)
    return {
        modality: [
            DayRate((now - timedelta(days=age)).date(), *counts.get(age, (0, 0))) for age in ages
        ]
        for modality, counts in sorted(by_modality.items())
    }
