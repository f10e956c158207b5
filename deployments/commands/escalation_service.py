"""``pacsflow escalation-service``: re-sends, backups and acknowledgements of Critical findings
(I/O).

Long-running: every ``escalation.poll_seconds`` it re-sends notifications still unacknowledged
after the ack timeout and escalates them to the next level (the backup), delivers what the
first attempt could not, and serves the acknowledge links (``escalation.listen_host`` /
``listen_port``; ``escalation.base_url`` is how people reach it).
"""

from __future__ import annotations

import argparse
import logging

from integrations.db.connection import open_database
from integrations.escalation.channels import build_channels
from integrations.escalation.engine import EscalationEngine
from integrations.escalation.service import EscalationService
from integrations.settings import load_settings

log = logging.getLogger("pacsflow.escalation")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "escalation-service",
        help="re-send unacknowledged critical notifications, escalate to backups, serve ack links",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default escalation.listen_host)")
    parser.add_argument("--port", type=int, help="listen port (default escalation.listen_port)")


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings)
    try:
        engine = EscalationEngine(settings, database, build_channels(settings, database))
        service = EscalationService(engine, host=args.host, port=args.port)
        log.info(
            "escalation service on http://%s:%d (ack links %s), channels: %s",
            service.host,
            service.port,
            settings.escalation.base_url,
            ", ".join(sorted(engine.channels)) or "none",
        )
        service.run()
    finally:
        database.close()
    return 0
