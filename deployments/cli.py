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
    "deployments.commands.demo",
    "deployments.commands.models",
    "deployments.commands.worklist",
    "deployments.commands.escalation_service",
    "deployments.commands.hl7_listener",
    "deployments.commands.emr_sender",
    "deployments.commands.emr_outbox",
    "deployments.commands.results_sender",
    "deployments.commands.results_outbox",
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
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def configure_logging(verbose: bool) -> None:
    level = "DEBUG" if verbose else os.environ.get("PACSFLOW_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    # pynetdicom logs every PDU at INFO; keep its warnings only unless debugging.
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if verbose else logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
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
