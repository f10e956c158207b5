"""``pacsflow hl7-listener``: the HL7 v2 ADT listener (MLLP) that keeps patient context."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from integrations.audit.trail import AuditTrail
from integrations.db.connection import DATABASE_WAIT_SECONDS, Database, open_database
from integrations.db.patients import PatientStore
from integrations.db.store import StudyStore
from integrations.emr.identifiers import MrnRules
from integrations.hl7.listener import AdtListener
from integrations.hl7.mllp import RefusalRecorder
from integrations.settings import Settings, load_settings

log = logging.getLogger("pacsflow.hl7-listener")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "hl7-listener", help="receive HL7 ADT over MLLP and keep the patient context"
    )
    parser.add_argument("--host", help="listen address (default: [hl7] host)")
    parser.add_argument("--port", type=int, help="listen port (default: [hl7] port)")
    parser.set_defaults(handler=run)


def refusal_recorder(database: Database, settings: Settings, *, tls: bool) -> RefusalRecorder:
    """Each connection a port refuses or closes early: one node event and one audit record."""
    store = StudyStore(database)
    audit = AuditTrail(database, settings) if settings.audit.enabled else None
    hl7 = settings.hl7
    service = f"mllp+tls://{hl7.host}:{hl7.tls_port}" if tls else f"mllp://{hl7.host}:{hl7.port}"

    def record(kind: str, detail: str, host: str) -> None:
        try:
            store.record_event(kind, detail, peer_host=host)
        except Exception:
            log.exception("could not record the refused MLLP connection")
        if audit is not None:
            audit.connection_refused(peer_host=host, service=service, reason=detail)

    return record


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings, checkout_timeout=DATABASE_WAIT_SECONDS)
    listener = AdtListener(
        settings.hl7,
        PatientStore(database, MrnRules.from_settings(settings.mrn)),
        AuditTrail(database, settings) if settings.audit.enabled else None,
    )
    server = listener.server(
        args.host, args.port, on_refused=refusal_recorder(database, settings, tls=False)
    )
    servers = [server]
    if settings.hl7.tls_port:
        servers.append(
            listener.server(
                args.host, tls=True, on_refused=refusal_recorder(database, settings, tls=True)
            )
        )
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    for each in servers:
        each.start()
    host, port = server.address
    log.info(
        "HL7 listener on %s:%d%s (versions %s)",
        host,
        port,
        f", TLS on {servers[1].address[1]}" if len(servers) > 1 else "",
        ", ".join(settings.hl7.accepted_versions),
    )
    if not settings.hl7.allowed_senders:
        log.warning("HL7 listener accepts ADT from any sender: set [hl7] allowed_senders")
    try:
        stop.wait()
    finally:
        for each in servers:
            each.stop()
        database.close()
    return 0
