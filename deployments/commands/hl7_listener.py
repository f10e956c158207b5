"""``pacsflow hl7-listener``: the HL7 v2 ADT listener (MLLP) that keeps patient context."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from integrations.db.connection import open_database
from integrations.db.patients import PatientStore
from integrations.emr.identifiers import MrnRules
from integrations.hl7.listener import AdtListener
from integrations.settings import load_settings

log = logging.getLogger("pacsflow.hl7-listener")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "hl7-listener", help="receive HL7 ADT over MLLP and keep the patient context"
    )
    parser.add_argument("--host", help="listen address (default: [hl7] host)")
    parser.add_argument("--port", type=int, help="listen port (default: [hl7] port)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings)
    listener = AdtListener(
        settings.hl7, PatientStore(database, MrnRules.from_settings(settings.mrn))
    )
    server = listener.server(args.host, args.port)
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    server.start()
    host, port = server.address
    log.info(
        "HL7 listener on %s:%d (versions %s)", host, port, ", ".join(settings.hl7.accepted_versions)
    )
    if not settings.hl7.allowed_senders:
        log.warning("HL7 listener accepts ADT from any sender: set [hl7] allowed_senders")
    try:
        stop.wait()
    finally:
        server.stop()
        database.close()
    return 0
