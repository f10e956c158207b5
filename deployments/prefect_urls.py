"""Where the Prefect API and UI are, for pacsflow's processes and for a browser (I/O).

When ``pacsflow serve`` starts the Prefect server itself, the server's UI must be told its own
API address (``PREFECT_UI_API_URL``): unset, the UI asks ``http://127.0.0.1:4200/api``
whatever port the server listens on, and shows "Can't connect to Server API" (or, worse,
another Prefect's runs).
"""

from __future__ import annotations

import os
import socket

from integrations.settings import Settings

_ANY_ADDRESS = {"0.0.0.0", "::", ""}


def public_base_url(settings: Settings) -> str:
    """The server's address as a browser reaches it: ``[prefect] public_url`` or host:port."""
    prefect = settings.prefect
    if prefect.public_url:
        return prefect.public_url.rstrip("/")
    host = socket.getfqdn() if prefect.server_host in _ANY_ADDRESS else prefect.server_host
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{prefect.server_port}"


def server_environment(settings: Settings) -> dict[str, str]:
    """Environment of a Prefect server started by pacsflow: its UI asks the right API."""
    base = public_base_url(settings)
    return {
        "PREFECT_SERVER_API_HOST": settings.prefect.server_host,
        "PREFECT_SERVER_API_PORT": str(settings.prefect.server_port),
        "PREFECT_UI_API_URL": f"{base}/api",
        "PREFECT_UI_URL": base,
        "PREFECT_API_URL": "",
    }


def client_environment(*, started_server: bool) -> dict[str, str]:
    """CSRF handling of pacsflow's Prefect clients, matched to the server's.

    Prefect clients default to CSRF support: every new client asks ``GET /api/csrf-token``
    before its first POST, and a server without CSRF protection (Prefect's default) answers
    422, once per client. The warm worker opens a client for each poll of the scheduled
    runs, so the console showed one 422 a second. The server ``serve`` starts has CSRF
    protection exactly when ``PREFECT_SERVER_CSRF_PROTECTION_ENABLED`` says so; the clients
    follow it. An external server (``PREFECT_API_URL`` set) keeps the site's own settings.
    """
    if not started_server or "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED" in os.environ:
        return {}
    from prefect.settings import PREFECT_SERVER_CSRF_PROTECTION_ENABLED

    enabled = bool(PREFECT_SERVER_CSRF_PROTECTION_ENABLED.value())
    return {"PREFECT_CLIENT_CSRF_SUPPORT_ENABLED": "true" if enabled else "false"}


def api_url(settings: Settings) -> str:
    """The API pacsflow's own processes use: ``PREFECT_API_URL``, else the served one."""
    configured = os.environ.get("PREFECT_API_URL", "")
    if configured:
        return configured
    prefect = settings.prefect
    host = "127.0.0.1" if prefect.server_host in _ANY_ADDRESS else prefect.server_host
    return f"http://{host}:{prefect.server_port}/api"


def ui_url(settings: Settings) -> str:
    """The UI's address for links printed to an operator."""
    configured = os.environ.get("PREFECT_UI_URL", "")
    if configured:
        return configured.rstrip("/")
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"].removesuffix("/").removesuffix("/api")
    return public_base_url(settings)


def flow_run_url(ui: str, flow_run_id: str) -> str:
    return f"{ui}/runs/flow-run/{flow_run_id}"
