"""``pacsflow results-sender``: deliver the results outbox (SR, then overlays) to the PACS (I/O)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from integrations.db.connection import open_database
from integrations.dicom.result_sender import ResultsSender
from integrations.settings import load_settings

log = logging.getLogger("pacsflow.results-sender")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "results-sender",
        help="deliver queued result objects (SR, overlays) to the PACS, with retries and alerts",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings, min_size=2)
    sender = ResultsSender(database, settings)
    if settings.audit.enabled:  # every object the PACS stored, or that failed, is audited
        from integrations.audit.trail import AuditTrail

        trail = AuditTrail(database, settings)
        sender.on_delivered = trail.results_delivery_hook()
        sender.on_failed = trail.results_failure_hook()
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    # A restarted sender takes back what a crashed one had leased (only one runs per site).
    sender.outbox.release_all_leases()
    try:
        sender.run_forever(stop)
    finally:
        database.close()
    return 0
