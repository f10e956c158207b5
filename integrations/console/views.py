"""What each role is shown, cut from the database rows (pure).

Every route builds its JSON from these functions and its HTML page from that JSON, so the
page and the API show the same thing, and a field a role may not see is never in the
response at all (not hidden by the page).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from integrations.ldap.rbac import WorklistDetail

# The four states a technologist sees (issue 11): nothing about findings or tiers.
PROCESSING_STATUS = {
    "received": "received",
    "analysing": "analysing",
    "results stored": "results stored",
    "read": "results stored",
    "failed": "failed",
    "AI unavailable": "AI unavailable",
}


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def person_name(value: str) -> str:
    """A DICOM PN (``Family^Given^Middle``) as people read it: ``Family, Given Middle``."""
    family, _, rest = (value or "").partition("^")
    given = " ".join(part for part in rest.split("^") if part)
    return f"{family}, {given}" if given else family


def processing_status(row: dict[str, Any]) -> str:
    status = str(row.get("status") or "received")
    return PROCESSING_STATUS.get(status, "analysing" if row.get("analysing_at") else "received")


def worklist_item(
    row: dict[str, Any], detail: WorklistDetail, ack_link: Callable[[str], str] | None = None
) -> dict[str, Any]:
    """One worklist row as the role sees it; ``ack_link`` signs an acknowledge link."""
    item: dict[str, Any] = {
        "key": row.get("study_key") or row["study_instance_uid"],
        "patient_name": row.get("patient_name") or "",
        "patient_id": row.get("patient_id") or "",
        "accession_number": row.get("accession_number") or "",
        "modality": row.get("modality") or "",
        "study_description": row.get("study_description") or "",
        "closed_at": _time(row.get("closed_at")),
    }
    if detail is WorklistDetail.STATUS:
        item["status"] = processing_status(row)
        return item
    item["tier"] = row.get("tier")
    item["primary_finding"] = row.get("primary_finding") or ""
    item["status"] = processing_status(row)
    item["escalation"] = row.get("escalation_state")
    if ack_link is not None:
        item["acknowledge"] = [ack_link(token) for token in row.get("ack_tokens", [])]
    if detail is WorklistDetail.FULL:
        item["primary_probability"] = row.get("primary_probability")
        item["acknowledged_by"] = row.get("acknowledged_by")
        item["acknowledged_at"] = _time(row.get("acknowledged_at"))
    return item


def study_detail(
    data: dict[str, Any], analyses: list[dict[str, Any]], prefect_ui_url: str
) -> dict[str, Any]:
    """Everything about a study's AI result (the Radiologist's view); ``analyses`` are the
    loaded results: analyzer, model, status, findings with probability and threshold."""
    study = data["study"]
    run = data.get("run") or {}
    flow_run_id = str(run.get("flow_run_id") or "")
    return {
        "key": data.get("key") or study.study_instance_uid,
        "study_instance_uid": study.study_instance_uid,
        "patient_name": study.patient_name,
        "patient_id": study.patient_id,
        "patient_birth_date": study.patient_birth_date,
        "accession_number": study.accession_number,
        "study_date": study.study_date,
        "study_description": study.study_description,
        "modalities": list(study.modalities),
        "tier": (data.get("worklist") or {}).get("tier"),
        "status": processing_status(data.get("worklist") or {"status": "received"}),
        "analyses": analyses,
        "priors": [
            {
                "study_instance_uid": prior["prior_study_instance_uid"],
                "study_date": prior["prior_study_date"],
                "accession_number": prior["prior_accession_number"],
                "modality": prior["modality"],
                "status": prior["status"],
            }
            for prior in data.get("priors", [])
        ],
        "escalations": [
            {
                "finding": record.finding,
                "probability": record.probability,
                "team": record.team,
                "state": record.state,
                "acknowledged_by": record.acknowledged_by,
                "acknowledged_at": _time(record.acknowledged_at),
                "events": [
                    {"at": _time(event.get("at")), "kind": event.get("kind")}
                    for event in data.get("escalation_events", {}).get(record.idempotency_key, [])
                ],
            }
            for record in data.get("escalations", [])
        ],
        "prefect_run": {
            "id": flow_run_id,
            "state": run.get("state"),
            "url": f"{prefect_ui_url.rstrip('/')}/runs/flow-run/{flow_run_id}"
            if flow_run_id and prefect_ui_url
            else "",
        },
    }


def analysis_item(row: dict[str, Any], result: Any | None) -> dict[str, Any]:
    """One analyzer's result: every finding with its probability and threshold."""
    summary = row.get("summary") or {}
    item: dict[str, Any] = {
        "analyzer": row["analyzer"],
        "model": f"{row['model_name']} {row['model_version']}",
        "status": row["status"],
        "tier": row["tier"],
        "reason": summary.get("reason"),
        "interval_change": summary.get("interval_change"),
        "findings": [],
        "overlays": [],
    }
    if result is not None:
        item["findings"] = [
            {
                "label": finding.label,
                "probability": round(finding.probability, 4),
                "threshold": finding.threshold,
                "present": finding.present,
                "tier": finding.tier.value,
            }
            for finding in sorted(result.findings, key=lambda f: -f.probability)
        ]
        item["overlays"] = [
            {"index": index, "label": heatmap.label}
            for index, heatmap in enumerate(result.heatmaps)
        ]
    return item


def analytics_summary(data: dict[str, Any]) -> dict[str, Any]:
    """Volumes, tiers, escalation rate, turnaround per day; per-label positive rates."""

    def day(value: date) -> str:
        return value.isoformat()

    daily = [
        {
            "day": day(row["day"]),
            "studies": int(row["studies"]),
            "critical": int(row["critical"]),
            "urgent": int(row["urgent"]),
            "routine": int(row["routine"]),
            "escalation_rate": (int(row["escalated"]) / int(row["studies"]))
            if row["studies"]
            else 0.0,
            "turnaround_median_minutes": round(float(row["turnaround_median_seconds"]) / 60, 1)
            if row["turnaround_median_seconds"] is not None
            else None,
        }
        for row in data["daily"]
    ]
    labels = [
        {
            "analyzer": row["analyzer"],
            "label": row["label"],
            "positive": int(row["positive"]),
            "analysed": int(row["analysed"]),
            "positive_rate": int(row["positive"]) / int(row["analysed"])
            if row["analysed"]
            else 0.0,
        }
        for row in data["labels"]
    ]
    return {"days": data["days"], "daily": daily, "labels": labels}


def system_summary(data: dict[str, Any]) -> dict[str, Any]:
    """Health, queues, outboxes, failed runs, node events: no patient column."""
    return {
        "database": {
            "now": _time(data["database"]["now"]),
            "size_bytes": int(data["database"]["size_bytes"]),
        },
        "dispatch": {row["state"]: int(row["count"]) for row in data["dispatch"]},
        "outboxes": {
            table: [
                {"state": row["state"], "count": int(row["count"]), "oldest": _time(row["oldest"])}
                for row in rows
            ]
            for table, rows in data["outboxes"].items()
        },
        "escalations": {row["state"]: int(row["count"]) for row in data["escalations"]},
        "failed_runs": [
            {
                "dispatch_id": row["id"],
                "flow_run_id": str(row["flow_run_id"] or ""),
                "worker": row["worker"],
                "finished_at": _time(row["finished_at"]),
                "error": row["error"],
            }
            for row in data["failed_runs"]
        ],
        "node_events": [
            {
                "at": _time(row["at"]),
                "kind": row["kind"],
                "calling_ae_title": row["calling_ae_title"],
                "peer_host": row["peer_host"],
            }
            for row in data["node_events"]
        ],
    }


# -- plots as inline SVG (no plotting library, no script) ---------------------------------


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def bar_chart_svg(
    title: str,
    bars: list[tuple[str, float]],
    *,
    percent: bool = False,
    width: int = 560,
    bar_height: int = 18,
    colour: str = "#3566a8",
) -> str:
    """A horizontal bar chart: one labelled bar per (label, value)."""
    label_width, value_width, gap = 170, 60, 6
    height = 28 + max(1, len(bars)) * (bar_height + gap)
    top = max((value for _, value in bars), default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">'
        f"<title>{_escape(title)}</title>"
        f'<text x="0" y="14" font-weight="bold">{_escape(title)}</text>'
    ]
    if not bars:
        parts.append('<text x="0" y="40" fill="#666">no data in this period</text>')
    plot_width = width - label_width - value_width
    for index, (label, value) in enumerate(bars):
        y = 24 + index * (bar_height + gap)
        length = max(1.0, plot_width * value / top) if value else 0.0
        shown = f"{value:.0%}" if percent else (f"{value:g}")
        parts.append(
            f'<text x="{label_width - 6}" y="{y + bar_height - 5}" text-anchor="end">'
            f"{_escape(label)}</text>"
            f'<rect x="{label_width}" y="{y}" width="{length:.1f}" height="{bar_height}"'
            f' fill="{colour}"/>'
            f'<text x="{label_width + length + 4:.1f}" y="{y + bar_height - 5}">{shown}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def analytics_plots(summary: dict[str, Any]) -> list[str]:
    daily = summary["daily"]
    totals = {
        tier: sum(row[tier.lower()] for row in daily) for tier in ("Critical", "Urgent", "Routine")
    }
    return [
        bar_chart_svg("Studies per day", [(row["day"], row["studies"]) for row in daily]),
        bar_chart_svg("Studies by urgency tier", list(totals.items()), colour="#a83535"),
        bar_chart_svg(
            "Escalation rate per day",
            [(row["day"], row["escalation_rate"]) for row in daily],
            percent=True,
            colour="#c07a12",
        ),
        bar_chart_svg(
            "Median turnaround per day (minutes, close to results stored)",
            [
                (row["day"], row["turnaround_median_minutes"])
                for row in daily
                if row["turnaround_median_minutes"] is not None
            ],
            colour="#2d8a4e",
        ),
        bar_chart_svg(
            "Positive rate per label",
            [(f"{row['label']}", row["positive_rate"]) for row in summary["labels"]],
            percent=True,
            colour="#6a3fa0",
        ),
    ]
