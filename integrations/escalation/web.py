"""The escalation service over HTTP: acknowledge links and API, health, metrics (I/O).

Acknowledging a Critical finding takes a logged-in Radiologist or Emergency Physician, and
records that person, never a name the caller sends. ``GET /ack/{token}`` (the link in every
notification) sends the browser to the console's acknowledge page with a signed, expiring
link; the console asks for the login and then shows the finding and the button (a GET never
acknowledges, because mail scanners and link previews fetch every link they see).
``POST /api/ack/{token}`` is the same for integrations that hold the person's console
session (a JSON body; any ``by`` is ignored). ``GET /metrics`` (every pacsflow metric, :mod:`integrations.metrics`) and
``GET /api/escalations`` (the open ones, with findings) answer a console login with the
right role or the bearer token named by ``[escalation] api_bearer_env``.
"""

from __future__ import annotations

import hmac
import html
import logging
import os
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from integrations.console.sessions import SESSION_COOKIE, Session, SessionSigner
from integrations.db.escalations import EscalationRecord
from integrations.errors import ConfigError
from integrations.escalation.engine import EscalationEngine
from integrations.ldap.rbac import View, allowed
from integrations.metrics import CONTENT_TYPE, exposition

log = logging.getLogger(__name__)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:36em;margin:2em auto;padding:0 1em}}
.critical{{color:#b00;font-weight:bold}} button{{font-size:1.3em;padding:.5em 1.5em}}
dt{{font-weight:bold}}</style></head><body>{body}</body></html>"""


def _page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(_PAGE.format(title=html.escape(title), body=body), status_code=status_code)


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


def _console_signer(engine: EscalationEngine) -> SessionSigner | None:
    """The console's session signer, or None when no session secret is configured (then
    acknowledgement needs the console, and the API needs the bearer token)."""
    from integrations.console.app import session_signer

    try:
        return session_signer(engine.settings)
    except ConfigError as error:
        log.warning("console logins not accepted here: %s", error)
        return None


def create_app(engine: EscalationEngine) -> FastAPI:
    app = FastAPI(title="pacsflow escalation", docs_url=None, redoc_url=None, openapi_url=None)
    store = engine.store
    signer = _console_signer(engine)
    console = engine.settings.console
    api_token = os.environ.get(engine.escalation.api_bearer_env, "")

    def session_of(request: Request) -> Session | None:
        return signer.load(request.cookies.get(SESSION_COOKIE)) if signer else None

    def bearer_ok(request: Request) -> bool:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return (
            bool(api_token)
            and scheme.lower() == "bearer"
            and hmac.compare_digest(value.strip().encode(), api_token.encode())
        )

    def require(request: Request, view: View) -> None:
        if bearer_ok(request):
            return
        session = session_of(request)
        if session is None:
            raise HTTPException(
                status_code=401,
                detail="log in to the console or send the monitoring bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not allowed(session.roles, view):
            raise HTTPException(status_code=403, detail="your roles do not allow this")

    def console_ack_url(token: str) -> str | None:
        if signer is None or not console.enabled:
            return None
        return f"{console.base_url.rstrip('/')}/ack/{signer.ack_link_token(token)}"

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ack/{token}", response_class=HTMLResponse)
    async def ack_link(token: str) -> Any:
        record = await run_in_threadpool(store.by_token, token)
        if record is None:
            return _page("Unknown link", "<p>This acknowledge link is not known.</p>", 404)
        target = console_ack_url(token)
        if target is None:
            return _page(
                "Acknowledge in the console",
                "<h1>Critical AI finding</h1><p>Acknowledge it in the pacsflow console:"
                f' <a href="{html.escape(console.base_url)}">{html.escape(console.base_url)}</a>'
                " (log in first).</p>",
            )
        return RedirectResponse(target, status_code=303)

    @app.post("/ack/{token}", response_class=HTMLResponse)
    async def ack_form(token: str) -> Any:
        # Old pages posted here with a typed name: send them to the console's login.
        return await ack_link(token)

    @app.post("/api/ack/{token}")
    async def ack_api(token: str, request: Request) -> JSONResponse:
        session = session_of(request)
        if session is None:
            raise HTTPException(status_code=401, detail="log in to the console to acknowledge")
        if not allowed(session.roles, View.ACKNOWLEDGE):
            raise HTTPException(
                status_code=403, detail="only a Radiologist or Emergency Physician acknowledges"
            )
        # A cross-site form cannot send JSON without a CORS preflight, which this app refuses.
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise HTTPException(status_code=415, detail="send a JSON body")
        by = session.username if session.username in engine.escalation.people else session.who
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
    async def escalations(request: Request) -> list[dict[str, Any]]:
        require(request, View.ESCALATIONS)
        records = await run_in_threadpool(store.active)
        return [_record_json(record) for record in records]

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        require(request, View.METRICS)
        body = await run_in_threadpool(exposition, store.database)
        return Response(body, media_type=CONTENT_TYPE)

    return app
