"""The escalation service over HTTP: acknowledge pages and API, health, metrics (I/O).

``GET /ack/{token}`` shows the finding and a button; only ``POST /ack/{token}`` acknowledges,
because mail scanners and chat link previews fetch every link they see and must not
acknowledge a Critical finding on a person's behalf. ``POST /api/ack/{token}`` (JSON
``{"by": "..."}``) is the same for integrations (a secure-messaging "Acknowledge" button).
``GET /metrics`` is Prometheus text for monitoring (late first notifications, undelivered,
unacknowledged); ``GET /api/escalations`` lists the open ones without patient data.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from integrations.db.escalations import EscalationRecord
from integrations.escalation.engine import EscalationEngine

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em}}
.critical{{color:#b00;font-weight:bold}} button{{font-size:1.3em;padding:.5em 1.5em}}
dt{{font-weight:bold}}</style></head><body>{body}</body></html>"""


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status_code)


def _summary(record: EscalationRecord, facts: Any) -> str:
    rows = [
        (
            "Finding",
            f'<span class="critical">{html.escape(record.finding)}</span>'
            f" ({record.probability:.0%})",
        ),
        ("Ward", html.escape(facts.patient_location or "unknown")),
        ("Accession", html.escape(facts.accession_number or "")),
        ("Modality", html.escape(facts.modality)),
        ("Team", html.escape(record.team)),
        ("State", html.escape(record.state)),
    ]
    if record.acknowledged_at:
        rows.append(
            (
                "Acknowledged",
                f"{html.escape(record.acknowledged_by or '')} at"
                f" {record.acknowledged_at.isoformat(timespec='seconds')}",
            )
        )
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _record_json(record: EscalationRecord) -> dict[str, Any]:
    return {
        "idempotency_key": record.idempotency_key,
        "study_instance_uid": record.study_instance_uid,
        "finding": record.finding,
        "probability": record.probability,
        "team": record.team,
        "state": record.state,
        "level": record.level,
        "round": record.round,
        "first_notification_seconds": record.first_notification_seconds,
        "first_notification_late": record.first_notification_late,
        "acknowledged_by": record.acknowledged_by,
        "acknowledged_at": record.acknowledged_at.isoformat() if record.acknowledged_at else None,
    }


def metrics_text(summary: dict[str, Any]) -> str:
    lines = [
        "# HELP pacsflow_escalations Escalations by state.",
        "# TYPE pacsflow_escalations gauge",
    ]
    for state in ("undelivered", "unacknowledged", "acknowledged", "exhausted", "unroutable"):
        lines.append(f'pacsflow_escalations{{state="{state}"}} {int(summary[state] or 0)}')
    lines += [
        "# HELP pacsflow_escalation_late_total First notifications later than the deadline.",
        "# TYPE pacsflow_escalation_late_total counter",
        f"pacsflow_escalation_late_total {int(summary['late'] or 0)}",
        "# HELP pacsflow_escalation_first_notification_seconds Study close to first notification.",
        "# TYPE pacsflow_escalation_first_notification_seconds summary",
    ]
    for quantile, key in (("0.5", "p50"), ("0.95", "p95")):
        value = summary[key]
        lines.append(
            f'pacsflow_escalation_first_notification_seconds{{quantile="{quantile}"}}'
            f" {float(value) if value is not None else 'NaN'}"
        )
    lines += [
        f"pacsflow_escalation_first_notification_seconds_sum {float(summary['seconds_sum'] or 0)}",
        f"pacsflow_escalation_first_notification_seconds_count {int(summary['measured'] or 0)}",
    ]
    return "\n".join(lines) + "\n"


def create_app(engine: EscalationEngine) -> FastAPI:
    app = FastAPI(title="pacsflow escalation", docs_url=None, redoc_url=None, openapi_url=None)
    store = engine.store

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ack/{token}", response_class=HTMLResponse)
    async def ack_page(token: str, by: str = "") -> HTMLResponse:
        record = await run_in_threadpool(store.by_token, token)
        if record is None:
            return _page("Unknown link", "<p>This acknowledge link is not known.</p>", 404)
        facts = await run_in_threadpool(engine.study_facts, record.study_instance_uid)
        if record.state == "acknowledged":
            return _page(
                "Already acknowledged", "<h1>Already acknowledged</h1>" + _summary(record, facts)
            )
        person = engine.escalation.people.get(by)
        shown = person.name if person else by
        form = (
            f'<form method="post" action="/ack/{html.escape(token)}">'
            f'<input type="hidden" name="by" value="{html.escape(by)}">'
            f"<p>Acknowledging as <b>{html.escape(shown or 'unknown')}</b>.</p>"
            '<button type="submit">Acknowledge</button></form>'
        )
        return _page(
            "Critical AI finding", "<h1>Critical AI finding</h1>" + _summary(record, facts) + form
        )

    @app.post("/ack/{token}", response_class=HTMLResponse)
    async def ack_form(token: str, request: Request) -> HTMLResponse:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        by = (form.get("by") or [""])[0] or request.query_params.get("by", "")
        result = await run_in_threadpool(engine.acknowledge, token, by, "web")
        if result is None:
            return _page("Unknown link", "<p>This acknowledge link is not known.</p>", 404)
        facts = await run_in_threadpool(engine.study_facts, result.record.study_instance_uid)
        title = "Acknowledged" if result.newly_acknowledged else "Already acknowledged"
        return _page(title, f"<h1>{title}</h1>" + _summary(result.record, facts))

    @app.post("/api/ack/{token}")
    async def ack_api(token: str, request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except ValueError:
            body = {}
        by = str(body.get("by", "")) if isinstance(body, dict) else ""
        result = await run_in_threadpool(engine.acknowledge, token, by, "api")
        if result is None:
            raise HTTPException(status_code=404, detail="unknown token")
        return JSONResponse(
            {
                "acknowledged": True,
                "newly_acknowledged": result.newly_acknowledged,
                "also_acknowledged": list(result.also_acknowledged),
                "escalation": _record_json(result.record),
            }
        )

    @app.get("/api/escalations")
    async def escalations() -> list[dict[str, Any]]:
        records = await run_in_threadpool(store.active)
        return [_record_json(record) for record in records]

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> str:
        return metrics_text(await run_in_threadpool(store.latency_summary))

    return app
