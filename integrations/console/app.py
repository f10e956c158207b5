"""The console over HTTP: login, role-checked pages and JSON, acknowledgement (I/O).

Every route names the :class:`View` it shows and is checked on the server: not logged in is
401 for ``/api/*`` and a redirect to the login page for pages; logged in without a role that
allows the view is 403. Pages are rendered from the same role-cut JSON the API returns.
State-changing forms carry the session's CSRF token, and every POST from another origin is
refused. Logins (success and failure), views of a study's AI result, exports and
acknowledgements are written to the audit trail when it is installed.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pydicom
from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from integrations.audit.trail import AuditTrail
from integrations.console import views
from integrations.console.overlay import overlay_png
from integrations.console.queries import ConsoleQueries
from integrations.console.sessions import SESSION_COOKIE, Session, SessionSigner, csrf_matches
from integrations.db.connection import Database
from integrations.errors import ConfigError, PeerRejectedError, PeerUnavailableError
from integrations.escalation.engine import EscalationEngine
from integrations.ldap.directory import Directory
from integrations.ldap.rbac import (
    View,
    allowed,
    role_mapping,
    roles_for_groups,
    worklist_detail,
)
from integrations.result_files import load_analysis
from integrations.settings import Settings

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).parent / "templates"

NAVIGATION = (
    ("/", "Worklist", View.WORKLIST),
    ("/analytics", "Analytics", View.ANALYTICS),
    ("/system", "System", View.SYSTEM),
    ("/audit", "Audit", View.AUDIT),
)


class NotLoggedIn(Exception):
    pass


class Forbidden(Exception):
    pass


def session_signer(settings: Settings) -> SessionSigner:
    """The signer for this site's sessions; ConfigError when the secret is missing or short."""
    console = settings.console
    secret = os.environ.get(console.session_secret_env, "")
    if not secret:
        raise ConfigError(
            f"console.session_secret_env: the environment variable {console.session_secret_env}"
            " holding the session secret is not set"
        )
    try:
        return SessionSigner(
            secret,
            idle_seconds=console.idle_timeout_minutes * 60,
            max_seconds=console.max_session_hours * 3600,
        )
    except ValueError as error:
        raise ConfigError(f"{console.session_secret_env}: {error}") from None


@dataclass
class Console:
    settings: Settings
    database: Database
    signer: SessionSigner
    directory: Directory | None
    queries: ConsoleQueries
    engine: EscalationEngine
    audit: AuditTrail

    def record(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Append to the audit trail; a failing trail is logged, never hides a page."""
        try:
            getattr(self.audit, method)(*args, **kwargs)
        except Exception:
            log.exception("audit record %s failed", method)

    @property
    def prefect_ui_url(self) -> str:
        configured = self.settings.console.prefect_ui_url
        return configured or os.environ.get("PREFECT_API_URL", "").removesuffix("/api")


def create_app(
    settings: Settings,
    database: Database,
    *,
    signer: SessionSigner | None = None,
    directory: Directory | None = None,
) -> FastAPI:
    signer = signer or session_signer(settings)
    if directory is None and settings.ldap.url:
        directory = Directory(settings.ldap)
    console = Console(
        settings=settings,
        database=database,
        signer=signer,
        directory=directory,
        queries=ConsoleQueries(database),
        engine=EscalationEngine(settings, database, channels={}, name="console"),
        audit=AuditTrail(database, settings),
    )
    templates = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["j2", "html"])
    )
    templates.filters["person"] = views.person_name
    mapping = role_mapping(settings.rbac)
    cookie = settings.console
    ack_link_seconds = settings.console.ack_link_minutes * 60

    app = FastAPI(title="pacsflow console", docs_url=None, redoc_url=None)
    app.state.console = console

    # -- sessions ---------------------------------------------------------------------------

    def secure_cookie(request: Request) -> bool:
        if isinstance(cookie.cookie_secure, bool):
            return cookie.cookie_secure
        forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
        if request.url.scheme == "https" or forwarded == "https":
            return True
        return not _loopback(request.url.hostname or "")

    def set_cookie(request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=int(settings.console.max_session_hours * 3600),
            secure=secure_cookie(request),
            httponly=True,
            samesite=cookie.same_site,
            path="/",
        )

    @app.middleware("http")
    async def sessions(request: Request, call_next: Callable[[Request], Any]) -> Response:
        session = signer.load(request.cookies.get(SESSION_COOKIE))
        request.state.session = session
        # The ACS is posted to by the IdP's page (another origin); the signed assertion is
        # its protection.
        if (
            request.method == "POST"
            and request.url.path != "/saml/acs"
            and not _same_origin(request)
        ):
            return JSONResponse({"detail": "cross-origin request refused"}, status_code=403)
        response: Response = await call_next(request)
        current = getattr(request.state, "session", None)
        if current is not None and not getattr(request.state, "logged_out", False):
            set_cookie(request, response, signer.dump(current))  # a fresh timestamp: the idle clock
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    def require(request: Request, view: View) -> Session:
        session: Session | None = request.state.session
        if session is None:
            raise NotLoggedIn()
        if not allowed(session.roles, view):
            raise Forbidden()
        return session

    def client_host(request: Request) -> str:
        return request.client.host if request.client else ""

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, _error: NotLoggedIn) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "not logged in"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, _error: Forbidden) -> Response:
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": "your roles do not allow this"}, status_code=403)
        return page(
            request,
            "message.html.j2",
            {"title": "Not allowed", "message": "Your roles do not allow this page."},
            status_code=403,
        )

    def page(
        request: Request, template: str, context: dict[str, Any], status_code: int = 200
    ) -> HTMLResponse:
        session: Session | None = request.state.session
        navigation = [
            (href, label)
            for href, label, view in NAVIGATION
            if session is not None and allowed(session.roles, view)
        ]
        body = templates.get_template(template).render(
            session=session,
            roles=", ".join(sorted(role.label for role in session.roles)) if session else "",
            navigation=navigation,
            path=request.url.path,
            **context,
        )
        return HTMLResponse(body, status_code=status_code)

    def ack_link(token: str) -> str:
        return f"/ack/{signer.ack_link_token(token)}"

    # -- login ------------------------------------------------------------------------------

    def landing(session: Session) -> str:
        for href, _label, view in NAVIGATION:
            if allowed(session.roles, view):
                return href
        return "/"

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request, next: str = "") -> HTMLResponse:
        return page(request, "login.html.j2", {"next": _safe_next(next), "error": ""})

    @app.post("/login")
    async def login(
        request: Request,
        username: str = Form(""),
        password: str = Form(""),
        next: str = Form(""),
    ) -> Response:
        target = _safe_next(next)
        host = client_host(request)

        def refused(message: str, status_code: int, reason: str) -> HTMLResponse:
            console.record("user_login", username or "(empty)", host, success=False, detail=reason)
            log.warning("console login refused (%s) from %s", reason, host)
            request.state.session = None
            response = page(
                request,
                "login.html.j2",
                {"next": target, "error": message, "username": username},
                status_code=status_code,
            )
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

        if console.directory is None:
            return refused("Login is not configured on this site (no [ldap] url).", 503, "no ldap")
        try:
            user = await run_in_threadpool(console.directory.authenticate, username, password)
        except PeerRejectedError:
            return refused("Unknown user name or wrong password.", 401, "invalid credentials")
        except PeerUnavailableError as error:
            log.error("console login: %s", error)
            return refused(
                "The hospital directory (LDAP) cannot be reached, so nobody can log in now."
                " Sessions already open keep working. Please try again in a few minutes or"
                " call the IT service desk.",
                503,
                "directory unavailable",
            )
        roles = roles_for_groups(user.groups, mapping)
        if not roles:
            return refused(
                "Your account is in no group that may use pacsflow. Ask IT for access.",
                403,
                "no mapped group",
            )
        session = signer.new_session(user.username, user.display_name, roles)
        request.state.session = session
        console.record("user_login", user.username, host, success=True)
        log.info("console login %s (%s)", user.username, ", ".join(sorted(roles)))
        # "/" is where everyone lands first: send each role to its own first page instead.
        destination = target if target not in ("", "/") else landing(session)
        return RedirectResponse(destination, status_code=303)

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        # No CSRF token needed: all a forged logout can do is end the victim's own session.
        session: Session | None = request.state.session
        if session is not None:
            console.record("user_logout", session.username, client_host(request))
        request.state.logged_out = True
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # -- SAML single sign-on ----------------------------------------------------------------

    if settings.saml.enabled:
        from integrations.saml.sp import ServiceProvider

        provider = ServiceProvider(settings.saml)

        def sso_unavailable(request: Request, error: PeerUnavailableError) -> HTMLResponse:
            host = client_host(request)
            console.record("user_login", "(saml)", host, success=False, detail=str(error))
            log.error("console SAML sign-on unavailable: %s", error)
            request.state.session = None
            response = page(
                request,
                "message.html.j2",
                {
                    "title": "Single sign-on unavailable",
                    "message": "Single sign-on is unavailable: the metadata of the identity"
                    " provider (IdP) cannot be loaded, so nobody can sign on with it now."
                    " Sessions already open keep working. Please call the IT service desk.",
                },
                status_code=503,
            )
            response.delete_cookie(SESSION_COOKIE, path="/")
            return response

        @app.get("/saml/metadata")
        async def saml_metadata() -> Response:
            try:
                metadata = await run_in_threadpool(provider.metadata)
            except PeerUnavailableError as error:
                log.error("console SAML metadata: %s", error)
                return Response(str(error), status_code=503, media_type="text/plain")
            return Response(metadata, media_type="application/samlmetadata+xml")

        @app.get("/saml/login")
        async def saml_login(request: Request, next: str = "") -> Response:
            try:
                location = await run_in_threadpool(provider.login_redirect, _safe_next(next))
            except PeerUnavailableError as error:
                return sso_unavailable(request, error)
            return RedirectResponse(location, status_code=303)

        @app.post("/saml/acs")
        async def saml_acs(
            request: Request, SAMLResponse: str = Form(""), RelayState: str = Form("")
        ) -> Response:
            host = client_host(request)
            try:
                user = await run_in_threadpool(provider.accept, SAMLResponse)
            except PeerUnavailableError as error:
                return sso_unavailable(request, error)
            except PeerRejectedError as error:
                console.record("user_login", "(saml)", host, success=False, detail=str(error))
                log.warning("console SAML login refused from %s: %s", host, error)
                return page(
                    request,
                    "message.html.j2",
                    {
                        "title": "Sign-on refused",
                        "message": f"The single sign-on was refused: {error}.",
                    },
                    status_code=401,
                )
            roles = roles_for_groups(user.groups, mapping)
            if not roles:
                console.record(
                    "user_login", user.username, host, success=False, detail="no mapped group"
                )
                return page(
                    request,
                    "message.html.j2",
                    {
                        "title": "No access",
                        "message": "Your account is in no group that may use pacsflow.",
                    },
                    status_code=403,
                )
            session = signer.new_session(user.username, user.display_name, roles)
            request.state.session = session
            console.record("user_login", user.username, host, success=True)
            log.info("console SAML login %s (%s)", user.username, ", ".join(sorted(roles)))
            target = _safe_next(RelayState)
            return RedirectResponse(
                target if target not in ("", "/") else landing(session), status_code=303
            )

    # -- worklist ---------------------------------------------------------------------------

    async def worklist_items(session: Session) -> list[dict[str, Any]]:
        detail = worklist_detail(session.roles)
        assert detail is not None  # View.WORKLIST implies one of the three roles
        rows = await run_in_threadpool(console.queries.worklist_rows)
        link = ack_link if allowed(session.roles, View.ACKNOWLEDGE) else None
        return [views.worklist_item(row, detail, link) for row in rows]

    @app.get("/api/worklist")
    async def api_worklist(request: Request) -> dict[str, Any]:
        session = require(request, View.WORKLIST)
        return {
            "detail": worklist_detail(session.roles),
            "studies": await worklist_items(session),
        }

    @app.get("/", response_class=HTMLResponse)
    async def worklist_page(request: Request) -> HTMLResponse:
        session = require(request, View.WORKLIST)
        return page(
            request,
            "worklist.html.j2",
            {
                "title": "Worklist",
                "detail": worklist_detail(session.roles),
                "studies": await worklist_items(session),
                "can_open": allowed(session.roles, View.STUDY),
            },
        )

    # -- one study --------------------------------------------------------------------------

    def load_study(key: str) -> dict[str, Any] | None:
        data = console.queries.study(console.queries.resolve(key))
        if data is None:
            return None
        analyses = []
        for row in data["analyses"]:
            result = None
            path = Path(row["result_path"])
            if path.is_file():
                try:
                    result = load_analysis(path)
                except (OSError, ValueError, KeyError) as error:
                    log.warning("analysis file of %s unreadable: %s", row["analyzer"], error)
            analyses.append(views.analysis_item(row, result))
        return views.study_detail(data, analyses, console.prefect_ui_url)

    async def study_or_404(key: str) -> dict[str, Any]:
        detail = await run_in_threadpool(load_study, key)
        if detail is None:
            raise HTTPException(status_code=404, detail="unknown study")
        return detail

    @app.get("/api/studies/{key}")
    async def api_study(request: Request, key: str) -> dict[str, Any]:
        session = require(request, View.STUDY)
        detail = await study_or_404(key)
        await run_in_threadpool(
            console.record,
            "exported",
            session.username,
            client_host(request),
            detail["study_instance_uid"],
            destination="console api",
        )
        return detail

    @app.get("/studies/{key}", response_class=HTMLResponse)
    async def study_page(request: Request, key: str) -> HTMLResponse:
        session = require(request, View.STUDY)
        detail = await study_or_404(key)
        await run_in_threadpool(
            console.record,
            "study_viewed",
            session.username,
            client_host(request),
            detail["study_instance_uid"],
            roles=sorted(session.roles),
        )
        return page(request, "study.html.j2", {"title": "Study", "study": detail})

    def render_overlay(key: str, analyzer: str, index: int) -> bytes | None:
        key = console.queries.resolve(key)
        row = next(
            (a for a in console.queries.analyses.analyses(key) if a["analyzer"] == analyzer), None
        )
        if row is None or not Path(row["result_path"]).is_file():
            return None
        result = load_analysis(Path(row["result_path"]))
        if not 0 <= index < len(result.heatmaps):
            return None
        heatmap = result.heatmaps[index]
        path = console.queries.instance_path(key, heatmap.image.sop_instance_uid)
        if path is None or not Path(path).is_file():
            return None
        image = pydicom.dcmread(path)
        return overlay_png(image, heatmap.values, frame=heatmap.image.frame_number)

    @app.get("/studies/{key}/overlays/{analyzer}/{index}.png")
    async def overlay(request: Request, key: str, analyzer: str, index: int) -> Response:
        require(request, View.OVERLAY)
        png = await run_in_threadpool(render_overlay, key, analyzer, index)
        if png is None:
            raise HTTPException(status_code=404, detail="no such overlay")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    # -- analytics, system, audit -----------------------------------------------------------

    async def analytics_data(days: int) -> dict[str, Any]:
        data = await run_in_threadpool(console.queries.analytics, max(1, min(days, 366)))
        return views.analytics_summary(data)

    @app.get("/api/analytics")
    async def api_analytics(request: Request, days: int = 30) -> dict[str, Any]:
        require(request, View.ANALYTICS)
        return await analytics_data(days)

    @app.get("/analytics", response_class=HTMLResponse)
    async def analytics_page(request: Request, days: int = 30) -> HTMLResponse:
        require(request, View.ANALYTICS)
        summary = await analytics_data(days)
        return page(
            request,
            "analytics.html.j2",
            {"title": "Analytics", "summary": summary, "plots": views.analytics_plots(summary)},
        )

    async def system_data() -> dict[str, Any]:
        return views.system_summary(await run_in_threadpool(console.queries.system))

    @app.get("/api/system")
    async def api_system(request: Request) -> dict[str, Any]:
        require(request, View.SYSTEM)
        return await system_data()

    @app.get("/system", response_class=HTMLResponse)
    async def system_page(request: Request) -> HTMLResponse:
        require(request, View.SYSTEM)
        return page(request, "system.html.j2", {"title": "System", "system": await system_data()})

    async def audit_data(user: str, kind: str, event_id: str, limit: int) -> dict[str, Any]:
        if console.audit is None:
            return {"installed": False, "records": []}
        records = await run_in_threadpool(
            console.audit.search,
            user_id=user or None,
            kind=kind or None,
            event_id=event_id or None,
            limit=max(1, min(limit, 1000)),
        )
        return {
            "installed": True,
            "records": [
                {
                    "id": record.id,
                    "recorded_at": record.recorded_at.isoformat(timespec="seconds"),
                    "event_id": record.event_id,
                    "event_type": record.event_type,
                    "action": record.action,
                    "outcome": record.outcome,
                    "user_id": record.user_id,
                    "kind": record.kind,
                }
                for record in records
            ],
        }

    @app.get("/api/audit")
    async def api_audit(
        request: Request, user: str = "", kind: str = "", event_id: str = "", limit: int = 100
    ) -> dict[str, Any]:
        session = require(request, View.AUDIT)
        await run_in_threadpool(
            console.record, "audit_log_used", session.username, client_host(request)
        )
        return await audit_data(user, kind, event_id, limit)

    @app.get("/audit", response_class=HTMLResponse)
    async def audit_page(
        request: Request, user: str = "", kind: str = "", event_id: str = "", limit: int = 100
    ) -> HTMLResponse:
        session = require(request, View.AUDIT)
        await run_in_threadpool(
            console.record, "audit_log_used", session.username, client_host(request)
        )
        data = await audit_data(user, kind, event_id, limit)
        return page(
            request,
            "audit.html.j2",
            {
                "title": "Audit",
                "audit": data,
                "query": {"user": user, "kind": kind, "event_id": event_id},
            },
        )

    # -- acknowledgement --------------------------------------------------------------------

    def escalation_for(signed: str) -> Any:
        token = signer.ack_token(signed, ack_link_seconds)
        if token is None:
            return None, None
        return token, console.engine.store.by_token(token)

    def ack_context(record: Any) -> dict[str, Any]:
        facts = console.engine.study_facts(record.study_instance_uid)
        return {
            "finding": record.finding,
            "ward": facts.patient_location or "unknown",
            "accession_number": facts.accession_number,
            "modality": facts.modality,
            "team": record.team,
            "state": record.state,
            "acknowledged_by": record.acknowledged_by,
            "acknowledged_at": record.acknowledged_at.isoformat(timespec="seconds")
            if record.acknowledged_at
            else "",
        }

    @app.get("/ack/{signed}", response_class=HTMLResponse)
    async def ack_page(request: Request, signed: str) -> HTMLResponse:
        require(request, View.ACKNOWLEDGE)
        _token, record = await run_in_threadpool(escalation_for, signed)
        if record is None:
            return page(
                request,
                "message.html.j2",
                {
                    "title": "Link not valid",
                    "message": "This acknowledge link has expired or is not known. Open the"
                    " worklist for a fresh one.",
                },
                status_code=404,
            )
        context = await run_in_threadpool(ack_context, record)
        return page(
            request,
            "ack.html.j2",
            {"title": "Critical AI finding", "signed": signed, "escalation": context},
        )

    @app.post("/ack/{signed}", response_class=HTMLResponse)
    async def ack(request: Request, signed: str, csrf_token: str = Form("")) -> HTMLResponse:
        session = require(request, View.ACKNOWLEDGE)
        if not csrf_matches(session, csrf_token):
            return page(
                request,
                "message.html.j2",
                {"title": "Form expired", "message": "Please reload the page and try again."},
                status_code=403,
            )
        token, record = await run_in_threadpool(escalation_for, signed)
        if record is None:
            return page(
                request,
                "message.html.j2",
                {"title": "Link not valid", "message": "This acknowledge link has expired."},
                status_code=404,
            )
        result = await run_in_threadpool(
            console.engine.acknowledge, token, acknowledging_person(console, session), "console"
        )
        # The engine audits the acknowledgement itself (one record, whichever door it came by).
        context = await run_in_threadpool(ack_context, result.record if result else record)
        title = "Acknowledged" if result and result.newly_acknowledged else "Already acknowledged"
        return page(
            request,
            "ack.html.j2",
            {"title": title, "signed": signed, "escalation": context, "done": True},
        )

    return app


def acknowledging_person(console: Console, session: Session) -> str:
    """A roster ID when the login name is one (the engine adds the roster name), else the
    login name with the directory's display name."""
    if session.username in console.settings.escalation.people:
        return session.username
    return session.who


def _safe_next(target: str) -> str:
    """Only a path on this site: never an open redirect to another host."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return ""
    return target


def _loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")
