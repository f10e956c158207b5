"""``pacsflow dispatcher``: the work-pool route, closed studies to a Prefect work pool (I/O)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from flows.dispatch import WorkPoolDispatcher
from integrations.db.connection import open_database
from integrations.db.store import StudyStore
from integrations.settings import load_settings

log = logging.getLogger("pacsflow.dispatcher")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dispatcher",
        help="hand each closed study to the Prefect work pool as a process-study run",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda _signum, _frame: stop.set())
    pool = settings.worker.work_pool
    log.info(
        "handing studies to work pool %s; start workers with: prefect worker start --pool %s",
        pool,
        pool,
    )
    try:
        WorkPoolDispatcher(StudyStore(database), settings).run_forever(stop)
    finally:
        database.close()
    return 0
