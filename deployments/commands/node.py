"""``pacsflow node``: the DICOM node alone (SCP and study close), for sites with remote workers."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from pydicom import config as pydicom_config

from flows.dispatch import StudyCloser
from integrations.audit.trail import AuditTrail
from integrations.db.connection import DATABASE_WAIT_SECONDS, open_database
from integrations.db.store import StudyStore
from integrations.dicom.recovery import reconcile_spool
from integrations.dicom.scp import DicomNode
from integrations.dicom.spool import Spool
from integrations.settings import load_settings

log = logging.getLogger("pacsflow.node")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("node", help="run the DICOM node (C-ECHO, C-STORE, study close)")
    parser.set_defaults(handler=run)


def stop_on_signals(stop: threading.Event) -> None:
    def handle(signum: int, _frame: object) -> None:
        log.info("received signal %d, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    # This process only lands bytes: pydicom's value validation would only re-check what
    # the node's own header check already validated, at a tenth of the node's CPU time.
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    database = open_database(
        settings,
        synchronous_commit=not settings.node.fsync,
        checkout_timeout=DATABASE_WAIT_SECONDS,
    )
    store = StudyStore(database)
    spool = Spool(settings.node.spool_dir, fsync=settings.node.fsync)
    reconcile_spool(spool, store)
    # Audit records are written once per association (when it ends), never per instance.
    audit = AuditTrail(database, settings) if settings.audit.enabled else None
    # The one alert when the storage crosses [node] min_free_percent goes to the operators.
    operators = None
    if settings.results.alert_team:
        from integrations.escalation.operators import OperatorAlerts

        operators = OperatorAlerts(settings, database, settings.results.alert_team)
    node = DicomNode(
        settings.node,
        store,
        spool,
        audit,
        operators,
        min_free_percent=settings.storage.min_free_percent,
    )
    stop = threading.Event()
    stop_on_signals(stop)
    node.start()
    try:
        StudyCloser(store, settings).run_forever(stop)
    finally:
        node.stop()
        database.close()
    return 0
