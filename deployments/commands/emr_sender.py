"""``pacsflow emr-sender``: deliver the outboxes (HL7 ORU to the EMR and ORM/OMI to the RIS over
MLLP, FHIR DiagnosticReport)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from integrations.db.connection import open_database
from integrations.emr.sender import OutboxSender
from integrations.settings import load_settings

log = logging.getLogger("pacsflow.emr-sender")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "emr-sender", help="deliver queued results to the EMR (HL7 MLLP and FHIR), with retries"
    )
    parser.add_argument(
        "--only",
        choices=("hl7", "ris", "fhir"),
        help="drain one outbox only (default: every enabled one)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings, min_size=2)
    senders: list[OutboxSender] = []
    if settings.emr.enabled and args.only in (None, "hl7"):
        from integrations.hl7.sender import Hl7Sender

        senders.append(Hl7Sender(database, settings))
    if settings.worklist.route != "none" and args.only in (None, "ris"):
        from integrations.hl7.sender import Hl7Sender

        senders.append(Hl7Sender(database, settings, "ris"))
    if settings.fhir.enabled and args.only in (None, "fhir"):
        from integrations.fhir.sender import FhirSender

        senders.append(FhirSender(database, settings))
    if not senders:
        log.warning("nothing to send: [emr] and [fhir] are both disabled (or --only excludes them)")
    if settings.audit.enabled:  # every result the EMR accepted, or that failed, is audited
        from integrations.audit.trail import AuditTrail

        trail = AuditTrail(database, settings)
        for sender in senders:
            sender.on_delivered = trail.emr_delivery_hook(sender.name)
            sender.on_failed = trail.emr_failure_hook(sender.name)
            if sender.name == "fhir":  # and each token request the token server refuses
                from integrations.fhir.sender import FhirSender

                assert isinstance(sender, FhirSender)
                sender.client.on_token_refused = trail.fhir_token_hook()
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
    for sender in senders:
        # A restarted sender takes back what a crashed one had leased (only one runs per site).
        sender.outbox.release_all_leases()
    threads = [
        threading.Thread(target=sender.run_forever, args=(stop,), name=f"{sender.name}-sender")
        for sender in senders
    ]
    for thread in threads:
        thread.start()
    try:
        stop.wait()
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        database.close()
    return 0
