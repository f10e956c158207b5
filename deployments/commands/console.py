"""``pacsflow console``: the web console (worklist, studies, analytics, system, audit) (I/O).

Serves ``[console] host:port`` until SIGINT or SIGTERM. Needs the session secret in the
environment variable named by ``[console] session_secret_env`` and a directory (``[ldap]``).
"""

from __future__ import annotations

import argparse
import logging

import uvicorn

from integrations.console.app import create_app, session_signer
from integrations.db.connection import open_database
from integrations.settings import load_settings

log = logging.getLogger("pacsflow.console")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "console", help="serve the web console (worklist, studies, analytics, system, audit)"
    )
    parser.add_argument("--host", help="listen address (default console.host)")
    parser.add_argument("--port", type=int, help="listen port (default console.port)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    signer = session_signer(settings)  # a missing secret stops here, before the database
    database = open_database(settings)
    try:
        app = create_app(settings, database, signer=signer)
        host = args.host or settings.console.host
        port = settings.console.port if args.port is None else args.port
        log.info("console on http://%s:%d (directory %s)", host, port, settings.ldap.url or "none")
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        database.close()
    return 0
