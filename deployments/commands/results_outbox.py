"""``pacsflow results-outbox``: see and re-drive the result objects waiting for the PACS (I/O).

The listing names objects by kind, SOP Instance UID and Study Instance UID only: no patient
data.
"""

from __future__ import annotations

import argparse

from integrations.db.connection import open_database
from integrations.db.results_outbox import ResultsOutbox
from integrations.settings import load_settings

STATES = ("pending", "sent", "failed", "superseded")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "results-outbox", help="list result deliveries to the PACS, or re-drive them now"
    )
    parser.add_argument("action", choices=("list", "retry"))
    parser.add_argument("--state", choices=STATES)
    parser.add_argument("--study", help="only this Study Instance UID")
    parser.add_argument(
        "--id", type=int, action="append", help="with retry: only these rows (default: all)"
    )
    parser.add_argument("--limit", type=int, default=50)
    parser.set_defaults(handler=run)


def _time(value: object) -> str:
    return value.isoformat(timespec="seconds") if value is not None else "-"  # type: ignore[attr-defined]


def run(args: argparse.Namespace) -> int:
    settings = load_settings(args.config)
    database = open_database(settings)
    try:
        outbox = ResultsOutbox(database)
        if args.action == "retry":
            count = outbox.retry_now(settings.results.give_up_after_hours, args.id)
            print(f"{count} delivery(ies) due again now")
            return 0
        counts = outbox.counts()
        print(" ".join(f"{state}={counts.get(state, 0)}" for state in STATES))
        rows = outbox.messages(args.study) if args.study else outbox.rows(args.state, args.limit)
        for row in rows:
            if args.state and row["state"] != args.state:
                continue
            when = (
                f"stored_at={_time(row['sent_at'])} ({row['outcome']})"
                if row["state"] == "sent"
                else f"next={_time(row['next_attempt_at'])}"
                if row["state"] == "pending"
                else f"failed_at={_time(row['failed_at'])}"
                if row["state"] == "failed"
                else ""
            )
            print(
                f"{row['id']:>6} {row['state']:<10} {row['destination']} {row['part']:<7}"
                f" {row['kind']:<18} attempts={row['attempts']:<3} {when}"
                f" queued_at={_time(row['created_at'])}"
                f" sop={row['sop_instance_uid']} study={row['study_instance_uid']}"
                + (f" error={row['last_error']}" if row["last_error"] else "")
            )
    finally:
        database.close()
    return 0
