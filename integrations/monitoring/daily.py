"""Build, write and alert on the monitoring report (I/O: database, PACS, files, channels).

``pacsflow monitor --days N`` and the ``monitoring-daily`` deployment both call
:func:`build_report`, :func:`write_report` and :func:`alert_on_report`. The alert goes to
``[monitoring] alert_team`` (else ``[results] alert_team``) over that team's channels, the
path every operational alert takes (:mod:`integrations.escalation.operational`), and is
always logged at CRITICAL.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from integrations.db.connection import Database
from integrations.dicom.scu import DicomClient
from integrations.errors import ConfigError
from integrations.escalation.channels import Channel, build_channels
from integrations.escalation.operational import send_operational_alert
from integrations.monitoring import collect
from integrations.monitoring.baseline import acceptance_baseline
from integrations.monitoring.orphans import missing_reports, unacknowledged_results
from integrations.monitoring.render import report_html
from integrations.monitoring.report import (
    DayRate,
    Drift,
    EscalationRate,
    MonitoringReport,
    crossings,
    drift,
)
from integrations.settings import Settings

log = logging.getLogger(__name__)


def escalation_rates(
    daily: Mapping[str, list[DayRate]],
    period_days: int,
    acceptance: Mapping[str, float],
    historical: Mapping[str, float],
    settings: Settings,
) -> tuple[EscalationRate, ...]:
    """Each modality's rate over the last ``period_days`` windows, with its drifts."""
    rates = []
    for modality, days in daily.items():
        recent = days[-period_days:]
        period = DayRate(
            recent[-1].day, sum(d.studies for d in recent), sum(d.escalated for d in recent)
        )
        references: list[tuple[Literal["acceptance", "historical"], float]] = []
        if modality in acceptance:
            references.append(("acceptance", acceptance[modality]))
        if modality in historical:
            references.append(("historical", historical[modality]))
        drifts: tuple[Drift, ...] = tuple(
            drift(modality, name, rate, period, days, settings.monitoring)
            for name, rate in references
        )
        rates.append(
            EscalationRate(modality, period.studies, period.escalated, tuple(days), drifts)
        )
    return tuple(rates)


def build_report(
    settings: Settings,
    database: Database,
    days: int = 1,
    *,
    now: datetime | None = None,
    pacs_client: DicomClient | None = None,
) -> MonitoringReport:
    """The report over the ``days`` days that end at ``now``, thresholds judged."""
    if days < 1:
        raise ConfigError("the monitoring period is at least one day")
    now = now or datetime.now(UTC)
    since = now - timedelta(days=days)
    monitoring = settings.monitoring
    orphans, checked, check_error = missing_reports(database, settings, since, now, pacs_client)
    orphans += unacknowledged_results(database, settings, since, now)
    daily = collect.daily_escalation_rates(database, now, max(days, monitoring.sustained_days))
    try:
        acceptance, acceptance_error = acceptance_baseline(monitoring.acceptance_record), ""
    except ConfigError as error:  # the rest of the report still matters
        acceptance, acceptance_error = {}, f"no acceptance baseline: {error}"
    report = MonitoringReport(
        generated_at=datetime.now(UTC),
        period_start=since,
        period_end=now,
        days=days,
        failed=tuple(collect.failed_studies(database, since)),
        stuck=tuple(collect.stuck_studies(database, settings, now)),
        unrouted=tuple(collect.unrouted_studies(database, since)),
        orphans=tuple(orphans),
        orphans_checked=checked,
        orphan_check_error=check_error,
        outboxes=tuple(collect.outbox_backlogs(database, now)),
        interface_drops=tuple(collect.interface_drops(database, since)),
        latency=tuple(collect.step_latencies(database, since)),
        escalation=escalation_rates(
            daily,
            days,
            acceptance,
            monitoring.historical_flag_rates,
            settings,
        ),
        acceptance_record=monitoring.acceptance_record,
        acceptance_error=acceptance_error,
    )
    return _with_crossings(report, settings)


def _with_crossings(report: MonitoringReport, settings: Settings) -> MonitoringReport:
    return replace(report, crossings=crossings(report, settings.monitoring))


def output_dir(settings: Settings) -> Path:
    configured = settings.monitoring.output_dir
    return Path(configured) if configured else settings.node.storage_dir / "monitoring"


def write_report(report: MonitoringReport, directory: Path) -> tuple[Path, Path]:
    """``monitoring-<day>.json`` and ``.html`` in ``directory`` (written whole, then renamed)."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"monitoring-{report.period_end:%Y-%m-%d}"
    data = report.to_json()
    written = []
    for suffix, text in (
        (".json", json.dumps(data, indent=2, sort_keys=True) + "\n"),
        (".html", report_html(data)),
    ):
        path = directory / f"{stem}{suffix}"
        partial = path.with_suffix(suffix + ".partial")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
        written.append(path)
    return written[0], written[1]


def alert_team(settings: Settings) -> str:
    return settings.monitoring.alert_team or settings.results.alert_team


def alert_on_report(
    report: MonitoringReport,
    settings: Settings,
    database: Database,
    *,
    channels: Mapping[str, Channel] | None = None,
    report_path: Path | None = None,
) -> bool:
    """Tell the operators about every threshold crossed; True once delivered (or nothing to
    tell). One alert per report and set of crossings (its idempotency key)."""
    if not report.crossings:
        return True
    title = (
        f"monitoring level {report.level}: {len(report.crossings)} threshold(s) crossed"
        f" in the {report.days} day(s) to {report.period_end:%Y-%m-%d %H:%M} UTC"
    )
    lines = tuple(f"[{c.check}] {c.message}" for c in report.crossings)
    if report_path is not None:
        lines += (f"Report: {report_path}",)
    log.critical("ALERT %s (%s)", title, "; ".join(lines))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    if channels is None:
        try:
            channels = build_channels(settings, database)
        except ConfigError as error:
            log.error("ALERT the monitoring alert cannot use the escalation channels: %s", error)
            return False
    return send_operational_alert(
        settings,
        channels,
        alert_team(settings),
        idempotency_key=f"monitoring-{report.period_end:%Y%m%d}-{digest}",
        title=title,
        lines=lines,
        facts={
            "alert": "monitoring",
            "level": report.level,
            "checks": sorted({c.check for c in report.crossings}),
            "counts": report.counts(),
            "period_start": report.period_start.isoformat(),
            "period_end": report.period_end.isoformat(),
        },
    )
