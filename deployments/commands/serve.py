"""``pacsflow serve``: everything a site needs, in one command (I/O).

Starts, in this order: the embedded PostgreSQL when ``[database] url`` is empty, the Prefect
server when ``PREFECT_API_URL`` is not set, then as supervised child processes the DICOM node,
the results sender (SR and overlays to the PACS), the HL7 ADT listener, the EMR sender and the
audit sender (when enabled), the warm workers (or, on the work-pool route, the dispatcher that
hands studies to the Prefect work pool), the escalation service, the web console (when
enabled) and the Runner for the other flow deployments. Stops them all on Ctrl-C.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import psycopg

from deployments.catalog import runner_deployments
from deployments.prefect_urls import api_url as served_api_url
from deployments.prefect_urls import client_environment, public_base_url, server_environment
from deployments.supervisor import Supervisor, pacsflow_command
from integrations.db.connection import database_url
from integrations.db.schema import migrate
from integrations.errors import ConfigError
from integrations.metrics import MULTIPROCESS_ENV, prepare_multiprocess_dir
from integrations.settings import Settings, load_settings, settings_environment

log = logging.getLogger("pacsflow.serve")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="run the whole site: node, workers, Prefect, deployments"
    )
    parser.set_defaults(handler=run)


@dataclass
class Site:
    settings: Settings
    supervisor: Supervisor
    env: dict[str, str]
    prefect_api_url: str
    prefect_ui_url: str
    embedded_database: object = None
    extra: dict[str, object] = field(default_factory=dict)


def wait_for_prefect(api_url: str, supervisor: Supervisor, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        supervisor.check()
        time.sleep(0.3)
    raise ConfigError(f"the Prefect server did not answer on {api_url} within {timeout:.0f} s")


@contextmanager
def running_site(settings: Settings) -> Iterator[Site]:
    """Start the site's processes; stop them when the block ends."""
    url, embedded = database_url(settings)
    with psycopg.connect(url, autocommit=True) as conn:
        migrate(conn)
    env = {**settings_environment(settings), "PACSFLOW_DATABASE__URL": url}
    audit_application(settings, url, start=True)
    supervisor = Supervisor()
    try:
        debugging = os.environ.get("PACSFLOW_LOG_LEVEL", "").upper() == "DEBUG"
        api_url = os.environ.get("PREFECT_API_URL", "")
        ui_url = os.environ.get("PREFECT_UI_URL", "") or api_url.removesuffix("/api")
        if not api_url:
            host, port = settings.prefect.server_host, settings.prefect.server_port
            api_url = served_api_url(settings)
            ui_url = public_base_url(settings)
            prefect_home = settings.node.storage_dir / "prefect"
            prefect_home.mkdir(parents=True, exist_ok=True)
            supervisor.add(
                "prefect-server",
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    host,
                    "--port",
                    str(port),
                    "--analytics-off",
                    # uvicorn's per-request access lines only when debugging
                    "--log-level",
                    "INFO" if debugging else "WARNING",
                ],
                {"PREFECT_HOME": str(prefect_home), **server_environment(settings)},
            )
            env["PREFECT_HOME"] = str(prefect_home)
            wait_for_prefect(api_url, supervisor)
        env["PREFECT_API_URL"] = api_url
        # Several processes count events: each keeps its values in this folder, and /metrics
        # adds them up (integrations.metrics). Not for the Prefect server, started above.
        env[MULTIPROCESS_ENV] = str(prepare_multiprocess_dir(settings.node.storage_dir))
        env["PREFECT_UI_URL"] = ui_url
        env.update(client_environment(started_server=not os.environ.get("PREFECT_API_URL")))
        supervisor.add("node", pacsflow_command("node"), env)
        # SR and overlays to the PACS, from the results outbox the workers fill
        supervisor.add("results-sender", pacsflow_command("results-sender"), env)
        if settings.hl7.enabled:  # ADT in: patient, ward and ordering physician for results
            supervisor.add("hl7-listener", pacsflow_command("hl7-listener"), env)
        # ORU and FHIR to the EMR, ORM/OMI to the RIS, from the outboxes
        if settings.emr.enabled or settings.fhir.enabled or settings.worklist.route != "none":
            supervisor.add("emr-sender", pacsflow_command("emr-sender"), env)
        if settings.audit.enabled and settings.audit.syslog_host:  # ATNA records to syslog
            supervisor.add("audit-sender", pacsflow_command("audit-sender"), env)
        express = settings.worker.express_count
        for index in range(settings.worker.warm_count - express):
            name = f"worker-{index + 1}"
            supervisor.add(
                name, pacsflow_command("worker", "--name", f"{os.uname().nodename}:{name}"), env
            )
        for index in range(express):  # only studies of at most express_max_images images
            name = f"express-{index + 1}"
            argv = pacsflow_command(
                "worker", "--express", "--name", f"{os.uname().nodename}:{name}"
            )
            supervisor.add(name, argv, env)
        # Re-sends, backups and acknowledgements of Critical escalations (first sends come
        # from the workers themselves).
        supervisor.add("escalation-service", pacsflow_command("escalation-service"), env)
        if settings.worker.uses_work_pool:  # closed studies become runs on the work pool
            supervisor.add("dispatcher", pacsflow_command("dispatcher"), env)
        if settings.console.enabled:  # the web console under the roles from the directory
            if os.environ.get(settings.console.session_secret_env):
                supervisor.add("console", pacsflow_command("console"), env)
            else:  # a site that pages must still come up; say plainly what is missing
                log.error(
                    "console not started: set %s to a secret of at least 32 characters"
                    " (or [console] enabled = false)",
                    settings.console.session_secret_env,
                )
        if runner_deployments(include_process_study=False):
            supervisor.add("runner", pacsflow_command("runner"), env)
        yield Site(settings, supervisor, env, api_url, ui_url, embedded)
    finally:
        supervisor.stop()
        try:
            audit_application(settings, url, start=False)
        finally:
            if embedded is not None:
                embedded.cleanup()


def audit_application(settings: Settings, url: str, *, start: bool) -> None:
    """Record the site's start (with its settings digest, and a configuration change when it
    differs from the last start's) or stop in the audit trail."""
    if not settings.audit.enabled:
        return
    from integrations.audit.trail import AuditTrail
    from integrations.db.connection import open_database

    database = open_database(
        settings.model_copy(update={"database": settings.database.model_copy(update={"url": url})}),
        migrate_schema=False,
    )
    try:
        trail = AuditTrail(database, settings)
        user = getpass.getuser()
        if start:
            _, changed = trail.application_started(user)
            if changed is not None:
                log.info("settings changed since the last start (audit record %d)", changed)
        else:
            trail.application_stopped(user)
    finally:
        database.close()


def wait_until_stopped(site: Site, stop: threading.Event) -> None:
    while not stop.is_set():
        site.supervisor.check()
        stop.wait(1.0)


def stop_event() -> threading.Event:
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    stop = stop_event()
    with running_site(settings) as site:
        print(
            f"pacsflow is running: DICOM node {settings.node.ae_title} on {settings.node.host}:{settings.node.port}"
        )
        print(f"Prefect UI: {site.prefect_ui_url}   (Ctrl-C stops everything)")
        if settings.worker.uses_work_pool:
            print(
                f"studies go to Prefect work pool {settings.worker.work_pool}: start workers with"
                f" PREFECT_API_URL={site.prefect_api_url}"
                f" prefect worker start --pool {settings.worker.work_pool}"
            )
        wait_until_stopped(site, stop)
    return 0
