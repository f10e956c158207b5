"""The pieces of a pacsflow site run in the test process: node, closer, warm worker, results
sender (I/O)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flows.dispatch import StudyCloser, WarmWorker
from integrations.audit.trail import AuditTrail
from integrations.db.connection import DATABASE_WAIT_SECONDS, Database, open_database
from integrations.db.store import StudyStore
from integrations.dicom.result_sender import ResultsSender
from integrations.dicom.scp import DicomNode
from integrations.dicom.spool import Spool
from integrations.escalation.operators import OperatorAlerts
from integrations.settings import Settings
from tasks.runtime import Runtime, install_runtime, reset_runtime


@dataclass
class RunningNode:
    node: DicomNode
    store: StudyStore
    database: Database
    settings: Settings

    @property
    def port(self) -> int:
        return self.node.address[1]


@contextmanager
def running_node(
    settings: Settings, *, close_studies: bool = True, alert_operators: bool = False
) -> Iterator[RunningNode]:
    """The DICOM node (and the study closer, unless disabled) until the block ends; with
    ``alert_operators`` its operational alerts go to ``[results] alert_team``."""
    database = open_database(settings, checkout_timeout=DATABASE_WAIT_SECONDS)
    store = StudyStore(database)
    node = DicomNode(
        settings.node,
        store,
        Spool(settings.node.spool_dir, fsync=settings.node.fsync),
        AuditTrail(database, settings) if settings.audit.enabled else None,
        OperatorAlerts(settings, database, settings.results.alert_team)
        if alert_operators
        else None,
        min_free_percent=settings.storage.min_free_percent,
    )
    node.start()
    stop = threading.Event()
    closer = None
    if close_studies:
        closer = threading.Thread(
            target=StudyCloser(store, settings).run_forever, args=(stop,), daemon=True
        )
        closer.start()
    try:
        yield RunningNode(node, store, database, settings)
    finally:
        stop.set()
        if closer:
            closer.join(10)
        node.stop()
        database.close()


@contextmanager
def running_worker(settings: Settings) -> Iterator[WarmWorker]:
    """A warm worker draining the queue in a background thread with its own event loop."""
    runtime = Runtime(settings=settings, database=open_database(settings))
    install_runtime(runtime)
    worker = WarmWorker(runtime.store, settings, name="test-worker")
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(worker.run_forever(stop, idle_poll_seconds=0.3))

    # Run with this thread's context: Prefect's settings (the session server's URL) live in a
    # context variable, which a new thread would not inherit.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(serve,), daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        reset_runtime()


@contextmanager
def running_results_sender(settings: Settings, **options: object) -> Iterator[ResultsSender]:
    """The results sender draining the results outbox to the PACS in a background thread."""
    database = open_database(settings)
    sender = ResultsSender(database, settings, **options)  # type: ignore[arg-type]
    sender.outbox.release_all_leases()
    stop = threading.Event()
    thread = threading.Thread(target=sender.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        yield sender
    finally:
        stop.set()
        thread.join(30)
        database.close()
