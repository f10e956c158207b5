"""``pacsflow worker``: a warm worker that runs process-study in-process, models loaded once."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import time

from flows.dispatch import WarmWorker
from integrations.db.connection import open_database
from integrations.settings import Settings, load_settings
from tasks.runtime import Runtime, install_runtime

log = logging.getLogger("pacsflow.worker")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("worker", help="run a warm worker draining the study queue")
    parser.add_argument("--name", help="worker name in the dispatch table (default host:pid)")
    parser.add_argument(
        "--express",
        action="store_true",
        help="take only studies of at most [worker] express_max_images images (the express lane)",
    )
    parser.set_defaults(handler=run)


def prepare_models(settings: Settings) -> None:
    """Load every routed analyzer now (and build demo packages when configured to).

    A package that is missing, damaged, or not for clinical use while
    ``[models] allow_non_clinical`` is off stops the worker before it takes a study: the
    :class:`PackageError` names each package and what to do.
    """
    names = settings.analyzer_names()
    if not names:
        return
    from models.registry import get_registry

    if settings.models.build_demo_if_missing:
        from models.demo import ensure_demo_packages

        ensure_demo_packages(settings.models.dir, names)
    registry = get_registry(
        settings.models.dir,
        settings.models.device,
        allow_non_clinical=settings.models.allow_non_clinical,
    )
    registry.require(names)
    if settings.models.allow_non_clinical:
        log.warning(
            "[models] allow_non_clinical = true: non-clinical packages may load; their results"
            " are marked NOT FOR CLINICAL USE"
        )
    started = time.perf_counter()
    for name in names:
        registry.get(name).warm_up()
    log.info(
        "models ready: %s (warmed up in %.1f s)", ", ".join(names), time.perf_counter() - started
    )


async def serve_queue(worker: WarmWorker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await worker.prepare()
    if worker.max_images is not None:
        log.info(
            "express worker %s waiting for studies of at most %d images",
            worker.name,
            worker.max_images,
        )
    else:
        log.info("worker %s waiting for studies", worker.name)
    await worker.run_forever(stop)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    prepare_models(settings)  # refuse to start before touching the queue
    runtime = Runtime(settings=settings, database=open_database(settings))
    install_runtime(runtime)
    from deployments.cli import quiet_prefect_console

    quiet_prefect_console()
    worker = WarmWorker(runtime.store, settings, name=args.name, express=args.express)
    if not args.express and settings.worker.express_count and settings.worker.general_nice:
        os.nice(settings.worker.general_nice)  # the express lane's worker goes first
    try:
        asyncio.run(serve_queue(worker))
    finally:
        runtime.close()
    return 0
