"""``pacsflow audit-sender``: send the audit trail to the syslog collector (ATNA) (I/O)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from integrations.db.connection import open_database
from integrations.errors import ConfigError
from integrations.settings import load_settings

log = logging.getLogger("pacsflow.audit-sender")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "audit-sender",
        help="send the audit records to the [audit] syslog collector, in order, with retries",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    if not settings.audit.syslog_host:
        raise ConfigError("[audit] syslog_host is empty: there is no collector to send to")
    from integrations.audit.sender import AuditSender

    database = open_database(settings, min_size=1)
    sender = AuditSender(database, settings)
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    # A restarted sender takes back what a crashed one had leased (only one runs per site).
    sender.outbox.release_all_leases()
    log.info("sending audit records to %s", sender.transport.destination)
    try:
        sender.run_forever(stop)
    finally:
        database.close()
    return 0
