"""monitoring-daily: the daily report of the 30 days after go-live, scheduled (I/O).

    build_report (database, C-FIND to the PACS) ─▶ write_report (JSON + HTML) ─▶ alert

Scheduled every day by the ``monitoring-daily`` deployment (deployments/catalog.py, also
``pacsflow monitor --days N``). Prefect sees no patient data: the one parameter is the number
of days, the result and the Markdown artifact carry counts, study keys and the thresholds
crossed; the report files stay on the site's disk (``[monitoring] output_dir``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task

FLOW_NAME = "monitoring-daily"
ARTIFACT_KEY = "monitoring-daily"


def artifact_markdown(summary: dict[str, Any]) -> str:
    lines = [
        f"# pacsflow monitoring, {summary['days']} day(s) to {summary['period_end'][:16]} UTC",
        "",
        "| check | count |",
        "| --- | --- |",
        *(f"| {key.replace('_', ' ')} | {value} |" for key, value in summary["counts"].items()),
        "",
    ]
    if summary["crossings"]:
        lines += [f"**Alert level {summary['level']}**", ""]
        lines += [f"- {line}" for line in summary["crossings"]]
    else:
        lines.append("No threshold crossed.")
    lines += ["", f"Report on the pacsflow host: `{summary['html']}`"]
    return "\n".join(lines) + "\n"


@task(name="monitoring_report", persist_result=False)
def monitoring_report(days: int, alert: bool) -> dict[str, Any]:
    """Build, write and alert; return a PHI-free summary (counts, keys, thresholds)."""
    from integrations.monitoring.daily import (
        alert_on_report,
        build_report,
        output_dir,
        write_report,
    )
    from tasks.runtime import get_runtime

    runtime = get_runtime()
    report = build_report(runtime.settings, runtime.database, days)
    json_path, html_path = write_report(report, output_dir(runtime.settings))
    delivered = (
        alert_on_report(report, runtime.settings, runtime.database, report_path=html_path)
        if alert
        else False
    )
    return {
        "days": report.days,
        "period_end": report.period_end.isoformat(),
        "level": report.level,
        "counts": report.counts(),
        "crossings": [f"[{c.check}] {c.message}" for c in report.crossings],
        "alert_delivered": delivered,
        "json": str(json_path),
        "html": str(html_path),
    }


@flow(name=FLOW_NAME, persist_result=False, log_prints=False)
async def monitoring_daily(days: int = 1, alert: bool = True) -> dict[str, Any]:
    """The monitoring report over the last ``days`` days, with an alert when a threshold is
    crossed.

    Args:
        days: the period in days (1 for the daily report; 30 for the month after go-live).
        alert: send the alert through the escalation channels when a threshold is crossed.
    """
    from prefect.artifacts import acreate_markdown_artifact

    logger = get_run_logger()
    summary = monitoring_report(days, alert)
    await acreate_markdown_artifact(
        key=ARTIFACT_KEY, markdown=artifact_markdown(summary), description="pacsflow monitoring"
    )
    if summary["crossings"]:
        logger.warning(
            "monitoring level %d: %d threshold(s) crossed",
            summary["level"],
            len(summary["crossings"]),
        )
    else:
        logger.info("monitoring: no threshold crossed")
    return summary
