"""``pacsflow emr-outbox``: see and re-queue what waits for or failed to reach the EMR."""

from __future__ import annotations

import argparse

from integrations.db.connection import open_database
from integrations.db.outbox import FhirOutboxStore, OutboxStore
from integrations.settings import load_settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("emr-outbox", help="list or retry EMR outbox messages")
    parser.add_argument("action", choices=("list", "retry"))
    parser.add_argument("--outbox", choices=("hl7", "fhir"), default="hl7")
    parser.add_argument("--state", choices=("pending", "sent", "failed"))
    parser.add_argument("--id", type=int, action="append", help="with retry: only these rows")
    parser.add_argument("--limit", type=int, default=50)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings)
    try:
        store = OutboxStore(database) if args.outbox == "hl7" else FhirOutboxStore(database)
        if args.action == "retry":
            print(f"{store.retry_failed(args.id)} message(s) queued again")
            return 0
        counts = store.counts()
        print(
            " ".join(f"{state}={counts.get(state, 0)}" for state in ("pending", "sent", "failed"))
        )
        for row in store.rows(args.state, args.limit):
            key = row.get("message_control_id") or row.get("idempotency_key")
            print(
                f"{row['id']:>6} {row['state']:<7} attempts={row['attempts']:<3}"
                f" {key} study={row['study_instance_uid'] or '-'}"
                f" context={row['clinical_context']}"
                + (f" error={row['last_error']}" if row["last_error"] else "")
            )
    finally:
        database.close()
    return 0
